// mailproxy-outbound (haraka-out): decides where each queued domain goes.
// - Our own domains go straight back to the backend over WireGuard, never out through haraka-in's
//   public address, so mail cannot circle between the two instances.
// - Everything else goes to its MX found in DNS (port `mx_port`, 25 except on test rigs).
// - MTA-STS (RFC 8461): for a domain whose policy is `enforce`, only MX hosts the policy names are used,
//   and Haraka's force-TLS is switched on for the domain: STARTTLS is required and the certificate must
//   verify for the MX name, or the delivery is temp-failed. A cached policy keeps applying when DNS or
//   the policy host fails, so a fetch failure never downgrades an enforce domain to plaintext.
import dns from 'node:dns';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { HarakaPlugin, Next } from '../haraka-types';
import { createMtaStsResolver, type MtaStsResolver, type PolicyDecision } from '../../mtasts/cache';
import { mxMatches } from '../../mtasts/policy';

interface OutboundIni {
  main: { mx_port?: number };
  backend: { host?: string; port?: number; bind?: string };
  local: { domains?: string[] };
  mta_sts: { enabled?: boolean; port?: number; cache_file?: string };
}

interface Mx {
  exchange: string;
  priority: number;
  port?: number;
  bind?: string;
}

interface HMail {
  path?: string;
  loginfo(msg: string): void;
  logwarn(msg: string): void;
  logerror(msg: string): void;
}

interface RoutePlugin extends HarakaPlugin {
  cfg: OutboundIni;
  localDomains: Set<string>;
  mtaSts: MtaStsResolver | null;
  load_outbound_ini(): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const constants = require('haraka-constants') as { OK: number; DENY: number; DENYSOFT: number };

/** Deliveries whose queue file `mailproxy queue delete` removed: dropped without a bounce. */
const deleted = new WeakSet<object>();

export function register(this: RoutePlugin): void {
  this.load_outbound_ini();
  this.register_hook('get_mx', 'route');
  this.register_hook('bounce', 'drop_deleted');
}

/** No bounce for a message an operator deleted from the queue (its body is gone anyway). */
export function drop_deleted(this: RoutePlugin, next: Next, hmail: HMail): void {
  if (deleted.has(hmail)) return next(constants.OK);
  next();
}

export function load_outbound_ini(this: RoutePlugin): void {
  this.cfg = this.config.get('mailproxy-outbound.ini', { booleans: ['-mta_sts.enabled'] }, () => this.load_outbound_ini()) as OutboundIni;
  this.localDomains = new Set((this.cfg.local?.domains ?? []).map((domain) => domain.toLowerCase()));
  const sts = this.cfg.mta_sts ?? {};
  if (!sts.enabled) {
    this.mtaSts = null;
    return;
  }
  this.mtaSts = createMtaStsResolver({
    // mailproxy-dns, loaded before this plugin, has already pointed node:dns at the configured servers.
    servers: dns.getServers(),
    port: Number(sts.port ?? 443),
    ...(sts.cache_file ? { cacheFile: path.resolve(String(sts.cache_file)) } : {}),
  });
}

/** Haraka's outbound TLS settings (a singleton): its force_tls_hosts list is what makes TLS mandatory. */
function setForcedTls(domain: string, forced: boolean): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const outboundTls = require('haraka/outbound/tls') as { cfg?: { force_tls_hosts?: string[] } };
  if (!outboundTls.cfg) return;
  const list = outboundTls.cfg.force_tls_hosts ?? [];
  const present = list.includes(domain);
  if (forced && !present) outboundTls.cfg.force_tls_hosts = [...list, domain];
  if (!forced && present) outboundTls.cfg.force_tls_hosts = list.filter((entry) => entry !== domain);
}

async function lookupMx(domain: string): Promise<Mx[]> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as { get_mx(domain: string): Promise<Mx[]> };
  const exchanges = await netUtils.get_mx(domain);
  return exchanges.sort((a, b) => a.priority - b.priority);
}

function applyPolicy(hmail: HMail, domain: string, exchanges: Mx[], decision: PolicyDecision): Mx[] | string {
  if (decision.error) hmail.logwarn(`MTA-STS ${domain}: ${decision.error}`);
  const named = (mx: Mx) => decision.mx.some((pattern) => mxMatches(pattern, mx.exchange));
  if (decision.mode !== 'enforce') {
    setForcedTls(domain, false);
    if (decision.mode === 'testing') {
      const strays = exchanges.filter((mx) => !named(mx));
      for (const mx of strays) hmail.loginfo(`MTA-STS ${domain} (testing): MX ${mx.exchange} is not in the policy`);
    }
    return exchanges;
  }
  const allowed = exchanges.filter(named);
  if (allowed.length === 0) return `MTA-STS policy of ${domain} (enforce) names none of its MX hosts`;
  setForcedTls(domain, true);
  hmail.loginfo(`MTA-STS ${domain}: enforce (${decision.source}), TLS required to ${allowed.map((mx) => mx.exchange).join(', ')}`);
  return allowed;
}

export function route(this: RoutePlugin, next: Next, hmail: HMail, domain: string): void {
  const name = domain.toLowerCase();
  if (hmail.path && !existsSync(hmail.path)) {
    // `mailproxy queue delete` removed the file: Haraka still holds the envelope in memory and would
    // connect and stall on the missing body; end the delivery here instead.
    deleted.add(hmail);
    hmail.loginfo(`queue file ${hmail.path} was deleted: dropping this delivery`);
    return next(constants.DENY, 'deleted from the queue');
  }
  if (this.localDomains.has(name)) {
    const { host, port, bind } = this.cfg.backend;
    const mx: Mx = { exchange: String(host), priority: 0, port: Number(port) };
    if (bind) mx.bind = bind;
    return next(constants.OK, [mx]);
  }
  const mxPort = Number(this.cfg.main.mx_port ?? 25);
  (async () => {
    const decision = this.mtaSts ? await this.mtaSts.policyFor(name) : null;
    let exchanges: Mx[];
    try {
      exchanges = await lookupMx(name);
    } catch (err) {
      hmail.logwarn(`MX lookup for ${name} failed: ${(err as Error).message}`);
      if (decision?.mode === 'enforce') return next(constants.DENYSOFT, `MX lookup for ${name} failed (MTA-STS enforce)`);
      // Let Haraka's own lookup produce its usual temp-fail or bounce for this DNS answer.
      return next();
    }
    if (exchanges.length === 0) return next();
    for (const mx of exchanges) mx.port = mxPort;
    if (!decision) return next(constants.OK, exchanges);
    const result = applyPolicy(hmail, name, exchanges, decision);
    if (typeof result === 'string') return next(constants.DENYSOFT, result);
    return next(constants.OK, result);
  })().catch((err: Error) => {
    // Fail closed: an unexpected error must not turn into a plaintext delivery.
    hmail.logerror(`routing ${name} failed: ${err.message}`);
    next(constants.DENYSOFT, `routing failed: ${err.message}`);
  });
}
