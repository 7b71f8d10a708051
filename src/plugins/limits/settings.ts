// mailproxy-limits' file, both ways: renderLimitsFiles writes mailproxy-limits.ini from the config's
// `limits` section (the reasons for the defaults are in the schema), readLimitsSettings gives the plugin
// its values, typed, as it reads them from Haraka's config. LimitsIni is the file both sides name.
import type { Config } from '../../config/schema';
import { iniSection, renderIni, WATCHED, type FileHeader, type IniAsRead, type RenderedPluginFiles } from '../../render/ini';
import type { HarakaConfig } from '../haraka/plugin';
import { parseExempt, type ConnectionLimits } from './counters';

/** mailproxy-limits.ini: counts and seconds, as written. */
export interface LimitsIni {
  main: {
    max_clients: number;
    max_clients_per_ip: number;
    max_connect_rate_per_ip: number;
    max_backend_sessions: number;
    max_backend_sessions_per_network: number;
    max_session_time: number;
    /** `exempt[]=` lines (haraka-config makes them an array); a comma list also works. */
    exempt: string[];
  };
}

export interface LimitsSettings {
  connections: ConnectionLimits;
  /** How long a client session may last; 0: no limit. */
  maxSessionMs: number;
  maxBackendSessions: number;
  maxBackendSessionsPerNetwork: number;
}

export function limitsIni(config: Config): LimitsIni {
  const { limits } = config;
  return {
    main: {
      max_clients: limits.max_clients,
      max_clients_per_ip: limits.max_clients_per_ip,
      max_connect_rate_per_ip: limits.max_connect_rate_per_ip,
      max_backend_sessions: limits.max_backend_sessions,
      max_backend_sessions_per_network: limits.max_backend_sessions_per_network,
      max_session_time: limits.max_session_time,
      exempt: limits.exempt,
    },
  };
}

export function renderLimitsFiles(config: Config, header: FileHeader): RenderedPluginFiles {
  return {
    'mailproxy-limits.ini': renderIni(header(WATCHED), [
      iniSection('main', limitsIni(config).main, {
        max_clients: 'Client sessions at once, all addresses together; one more gets 421 4.7.0.',
        max_clients_per_ip: 'Client sessions at once from one address (IPv6: its /64); 0: no limit.',
        max_connect_rate_per_ip: 'New connections a minute from one address (IPv6: its /64); 0: no limit.',
        max_backend_sessions: 'Backend sessions at once (mailproxy-forward takes one per client session); over it 421 4.7.0, no backend connection.',
        max_backend_sessions_per_network: 'Backend sessions at once from clients of one network (IPv4 /24, IPv6 /48); over it 421 4.7.0.',
        max_session_time: 'Seconds a client session may last; then 421 4.4.2. 0: no limit.',
        exempt: 'Addresses the per-address limits leave alone.',
      }),
    ]),
  };
}

function numberOr(value: unknown, fallback: number): number {
  const n = Number(value);
  return value === undefined || value === '' || !Number.isFinite(n) ? fallback : n;
}

/** The settings; a key the file does not name takes the config schema's default. `reload` runs when the file
 * changes. Throws on an exempt entry that is no address or CIDR. */
export function readLimitsSettings(config: HarakaConfig, reload?: () => void): LimitsSettings {
  const cfg = config.get('mailproxy-limits.ini', reload) as IniAsRead<LimitsIni>;
  const main = cfg.main ?? {};
  return {
    connections: {
      maxClients: numberOr(main.max_clients, 1500),
      maxClientsPerIp: numberOr(main.max_clients_per_ip, 10),
      connectRatePerIp: numberOr(main.max_connect_rate_per_ip, 60),
      exempt: parseExempt((Array.isArray(main.exempt) ? main.exempt : String(main.exempt ?? '').split(',')).map((entry) => String(entry).trim()).filter(Boolean)),
    },
    maxSessionMs: numberOr(main.max_session_time, 900) * 1000,
    maxBackendSessions: numberOr(main.max_backend_sessions, 50),
    maxBackendSessionsPerNetwork: numberOr(main.max_backend_sessions_per_network, 10),
  };
}
