// mailproxy-outbound's files, both ways: renderOutboundFiles writes mailproxy-outbound.ini (and the hook
// timeout) from the config, readOutboundSettings gives the plugin the file's values, typed, each key the
// file does not name with its default. OutboundIni is the file both sides name.
import type { Config } from '../../config/schema';
import { mtaStsCacheFile, pickupDir, tlsRptDir } from '../../config/paths';
import { iniSection, renderIni, renderList, RESTART, WATCHED, type FileHeader, type IniAsRead, type RenderedPluginFiles } from '../../render/ini';
import type { HarakaConfig } from '../haraka/plugin';

/** mailproxy-outbound.ini, as written. */
export interface OutboundIni {
  main: { mx_port: number; private_mx_ok: boolean; tunnel_network: string };
  mta_sts: { enabled: boolean; port: number; cache_file: string };
  dane: { enabled: boolean; resolver: string };
  backend: { host: string; port: number; bind: string };
  local: { domains: string[] };
  received: { rewrite: boolean; by: string };
  pickup: { enabled: boolean; dir: string };
  tls_rpt: { enabled: boolean; dir: string; sending_ip: string; sending_ipv6: string };
}

const BOOLEANS = ['-mta_sts.enabled', '-received.rewrite', '-dane.enabled', '-main.private_mx_ok', '-pickup.enabled', '-tls_rpt.enabled'];

export function outboundIni(config: Config): OutboundIni {
  const { outbound } = config;
  return {
    main: { mx_port: outbound.mx_port, private_mx_ok: outbound.allow_private_mx, tunnel_network: config.wireguard.network },
    mta_sts: { enabled: outbound.mta_sts, port: outbound.mta_sts_port, cache_file: mtaStsCacheFile(config) },
    dane: { enabled: outbound.dane, resolver: outbound.dane_resolver },
    backend: { host: config.backend.host, port: config.backend.port, bind: config.wireguard.address },
    local: { domains: config.domains.map((domain) => domain.toLowerCase()) },
    received: { rewrite: outbound.hide_internal_received, by: config.hostname },
    pickup: { enabled: config.inbound.store_and_forward.enabled || outbound.tls_rpt.enabled, dir: pickupDir(config) },
    tls_rpt: { enabled: outbound.tls_rpt.enabled, dir: tlsRptDir(config), sending_ip: config.public_ipv4, sending_ipv6: config.public_ipv6 ?? '' },
  };
}

export function renderOutboundFiles(config: Config, header: FileHeader): RenderedPluginFiles {
  const ini = outboundIni(config);
  return {
    'mailproxy-outbound.ini': renderIni(header(WATCHED), [
      iniSection('main', ini.main, {
        private_mx_ok: 'MX addresses in wireguard.network or private space (RFC 1918, loopback, link-local, ULA, CGNAT) are skipped: such a domain stays queued.',
      }),
      iniSection('mta_sts', ini.mta_sts),
      iniSection('dane', ini.dane, { resolver: 'A local DNSSEC-validating resolver (unbound): its AD bit decides.' }),
      iniSection('backend', ini.backend, { bind: 'Connect from the WireGuard address, the one the backend trusts.' }),
      iniSection('local', ini.local, { domains: 'Mail for these domains goes straight to the backend, never out through haraka-in.' }),
      iniSection('received', ini.received, {
        rewrite: 'Add the one Received line, `by <hostname> with ESMTP id …`; needs connection.ini add_received=false (a restart).',
      }),
      iniSection('pickup', ini.pickup, {
        enabled: "Send what is dropped into `dir`: the backup MX's DSNs (inbound.store_and_forward), the TLS reports (outbound.tls_rpt).",
      }),
      iniSection('tls_rpt', ini.tls_rpt, {
        enabled: 'Count the TLS sessions with domains that have a DANE or MTA-STS policy, per day, in `dir` (outbound.tls_rpt).',
        sending_ip: 'Our address in a report row when a session had no connection to ask, or its address was not public (NAT).',
        sending_ipv6: 'The same for a connection over IPv6 (empty: sending_ip).',
      }),
    ]),
    'mailproxy-outbound.timeout': renderList(
      `${header(RESTART)}\nSeconds each hook of mailproxy-outbound may take (Haraka's default: 30). Routing may wait for three rounds of DNSSEC lookups (5 s each, again over TCP when truncated) and an MTA-STS policy fetch.`,
      ['90'],
    ),
  };
}

const text = (value: unknown, fallback: string): string => (value === undefined ? fallback : String(value));

/** The file's values; `reload` runs when it changes. */
export function readOutboundSettings(config: HarakaConfig, reload?: () => void): OutboundIni {
  const cfg = config.get('mailproxy-outbound.ini', { booleans: BOOLEANS }, reload) as IniAsRead<OutboundIni>;
  const main = cfg.main ?? {};
  const sts = cfg.mta_sts ?? {};
  const dane = cfg.dane ?? {};
  const backend = cfg.backend ?? {};
  const received = cfg.received ?? {};
  const pickup = cfg.pickup ?? {};
  const tlsRpt = cfg.tls_rpt ?? {};
  return {
    main: { mx_port: Number(main.mx_port ?? 25), private_mx_ok: main.private_mx_ok === true, tunnel_network: text(main.tunnel_network, '') },
    mta_sts: { enabled: sts.enabled === true, port: Number(sts.port ?? 443), cache_file: text(sts.cache_file, '') },
    dane: { enabled: dane.enabled === true, resolver: text(dane.resolver, '127.0.0.1:53') },
    backend: { host: text(backend.host, ''), port: Number(backend.port ?? 25), bind: text(backend.bind, '') },
    local: { domains: (Array.isArray(cfg.local?.domains) ? cfg.local.domains : []).map((domain) => String(domain).toLowerCase()) },
    received: { rewrite: received.rewrite === true, by: text(received.by, '') },
    pickup: { enabled: pickup.enabled === true, dir: text(pickup.dir, '') },
    tls_rpt: { enabled: tlsRpt.enabled === true, dir: text(tlsRpt.dir, ''), sending_ip: text(tlsRpt.sending_ip, ''), sending_ipv6: text(tlsRpt.sending_ipv6, '') },
  };
}
