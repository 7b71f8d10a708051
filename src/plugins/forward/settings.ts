// mailproxy-forward's settings, as it reads them from Haraka's config: mailproxy-forward.ini (the backend,
// its timeouts, XCLIENT and STARTTLS), `me` (the name it greets the backend with), smtp.ini (Haraka's
// client timeout) and host_list (the domains it forwards).
import type { HarakaConfig, HarakaPlugin } from '../haraka/plugin';

interface ForwardIni {
  main: {
    host: string;
    port: number;
    bind?: string;
    connect_timeout: number;
    timeout: number;
    data_timeout?: number;
    body_timeout?: number;
    keepalive?: number;
    require_xclient: boolean;
    rdns_timeout: number;
    starttls: boolean;
  };
  store_and_forward?: {
    enabled?: boolean;
    dir?: string;
    max_disk_mb?: number;
    max_age_days?: number;
    drain_sessions?: number;
    probe_interval?: number;
    cache_size?: number;
  };
}

/** Backup MX: mail kept for cached-good recipients while the backend cannot be reached. */
export interface StoreForwardSettings {
  enabled: boolean;
  /** Holds the spool and the recipient cache. */
  dir: string;
  maxDiskBytes: number;
  maxAgeMs: number;
  drainSessions: number;
  probeIntervalMs: number;
  cacheSize: number;
}

export interface Settings {
  host: string;
  port: number;
  bind: string | undefined;
  connectTimeoutMs: number;
  replyTimeoutMs: number;
  /** The wait for the end-of-data reply, while the backend runs its content filters. */
  dataTimeoutMs: number;
  /** The longest the message data may take to reach the backend. */
  bodyTimeoutMs: number;
  /** NOOP to the backend after this much quiet while a transaction waits for its client. */
  keepAliveMs: number;
  requireXclient: boolean;
  starttls: boolean;
  rdnsTimeoutMs: number;
  heloName: string;
  /** Haraka's client inactivity timeout (smtp.ini), restored after the end-of-data wait. */
  clientTimeoutMs: number;
  storeAndForward: StoreForwardSettings;
}

export interface LocalDomains {
  localDomains: Set<string>;
  /** Where RCPT TO:<postmaster> (no domain) goes: the postmaster of the first domain. */
  postmasterDomain: string | null;
}

export interface ForwardPlugin extends HarakaPlugin, LocalDomains {
  settings: Settings;
  load_forward_ini(): void;
  load_host_list(): void;
}

/** The settings; `reload` runs when mailproxy-forward.ini changes. */
export function readForwardSettings(config: HarakaConfig, reload: () => void): Settings {
  const cfg = config.get('mailproxy-forward.ini', { booleans: ['+main.require_xclient', '-main.starttls', '-store_and_forward.enabled'] }, reload) as ForwardIni;
  const me = config.get('me') as string | null;
  const smtpIni = config.get('smtp.ini') as { main?: { inactivity_timeout?: unknown } };
  return {
    host: String(cfg.main.host),
    port: Number(cfg.main.port),
    bind: cfg.main.bind ? String(cfg.main.bind) : undefined,
    connectTimeoutMs: Number(cfg.main.connect_timeout) * 1000,
    replyTimeoutMs: Number(cfg.main.timeout) * 1000,
    dataTimeoutMs: Number(cfg.main.data_timeout ?? 600) * 1000,
    bodyTimeoutMs: Number(cfg.main.body_timeout ?? cfg.main.timeout) * 1000,
    keepAliveMs: Number(cfg.main.keepalive ?? 0) * 1000,
    requireXclient: cfg.main.require_xclient,
    starttls: cfg.main.starttls,
    rdnsTimeoutMs: Number(cfg.main.rdns_timeout ?? 3) * 1000,
    heloName: me ?? 'localhost',
    // Haraka's own default when smtp.ini does not set it (server.js).
    clientTimeoutMs: (Number(smtpIni.main?.inactivity_timeout) || 300) * 1000,
    storeAndForward: {
      enabled: cfg.store_and_forward?.enabled === true,
      dir: String(cfg.store_and_forward?.dir ?? ''),
      maxDiskBytes: Number(cfg.store_and_forward?.max_disk_mb ?? 1024) * 1024 * 1024,
      maxAgeMs: Number(cfg.store_and_forward?.max_age_days ?? 5) * 86_400_000,
      drainSessions: Number(cfg.store_and_forward?.drain_sessions ?? 2),
      probeIntervalMs: Number(cfg.store_and_forward?.probe_interval ?? 5) * 1000,
      cacheSize: Number(cfg.store_and_forward?.cache_size ?? 20_000),
    },
  };
}

/** The domains mail is forwarded for; `reload` runs when host_list changes. */
export function readLocalDomains(config: HarakaConfig, reload: () => void): LocalDomains {
  const list = config.get('host_list', 'list', reload) as string[];
  return {
    localDomains: new Set(list.map((domain) => domain.toLowerCase())),
    postmasterDomain: list[0]?.toLowerCase() ?? null,
  };
}
