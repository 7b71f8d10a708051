// mailproxy-forward's files, both ways: renderForwardFiles writes them from the mailproxy config
// (mailproxy-forward.ini, its hook timeout, host_list), and the readers give the plugin their values, typed,
// as it reads them from Haraka's config: mailproxy-forward.ini (the backend, its timeouts, XCLIENT and
// STARTTLS, store and forward), `me` (the name it greets the backend with), smtp.ini (Haraka's client
// timeout) and host_list (the domains it forwards). ForwardIni is the file both sides name.
import type { Config } from '../../config/schema';
import { pickupDir, storeDir } from '../../config/paths';
import { iniSection, renderIni, renderList, RESTART, WATCHED, type FileHeader, type IniAsRead, type RenderedPluginFiles } from '../../render/ini';
import type { HarakaConfig, HarakaPlugin } from '../haraka/plugin';

/** mailproxy-forward.ini: the backend in seconds, as written. */
export interface ForwardIni {
  main: {
    host: string;
    port: number;
    bind: string;
    connect_timeout: number;
    timeout: number;
    data_timeout: number;
    body_timeout: number;
    keepalive: number;
    require_xclient: boolean;
    starttls: boolean;
    rdns_timeout: number;
    reuse_sessions: boolean;
  };
  store_and_forward: {
    enabled: boolean;
    dir: string;
    pickup_dir: string;
    max_disk_mb: number;
    max_age_days: number;
    drain_sessions: number;
    probe_interval: number;
    cache_size: number;
  };
}

/** haraka-config's booleans: declared, so that it reads them as booleans, with the value a missing key takes. */
const BOOLEANS = ['+main.require_xclient', '-main.starttls', '-main.reuse_sessions', '-store_and_forward.enabled'];

export interface StoreForwardSettings {
  /** Keep mail for known recipients while the backend cannot be reached. */
  enabled: boolean;
  /** The spool directory; empty when the file names none. */
  dir: string;
  /** haraka-out's pickup directory, where a DSN to a sender is written; empty when the file names none. */
  pickupDir: string;
  maxDiskBytes: number;
  /** How long a kept message is retried before it is bounced or held. */
  maxAgeMs: number;
  /** Backend sessions that hand kept mail on at once, besides the live ones. */
  drainSessions: number;
  /** The wait between checks that the backend answers again. */
  probeIntervalMs: number;
  /** Most addresses the recipient cache keeps. */
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
  /** Keep idle backend sessions for the next client session (pool.ts). */
  reuseSessions: boolean;
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

const MB = 1024 * 1024;
const DAY_MS = 24 * 3_600_000;

/** The values of mailproxy-forward.ini for this config. */
export function forwardIni(config: Config): ForwardIni {
  const { backend } = config;
  const store = config.inbound.store_and_forward;
  return {
    main: {
      host: backend.host,
      port: backend.port,
      bind: config.wireguard.address,
      connect_timeout: backend.connect_timeout,
      timeout: backend.timeout,
      data_timeout: backend.data_timeout,
      body_timeout: bodyTimeout(config),
      keepalive: backend.keepalive,
      require_xclient: backend.require_xclient,
      starttls: backend.starttls,
      rdns_timeout: backend.rdns_timeout,
      reuse_sessions: backend.reuse_sessions,
    },
    store_and_forward: {
      enabled: store.enabled,
      dir: storeDir(config),
      pickup_dir: pickupDir(config),
      max_disk_mb: store.max_disk_mb,
      max_age_days: store.max_age_days,
      drain_sessions: store.drain_sessions,
      probe_interval: store.probe_interval,
      cache_size: store.cache_size,
    },
  };
}

/** The message data must reach the backend at 64 KB/s or better on average (a 25 MB message: 400 s), and it
 * fails sooner when the backend takes nothing for backend.timeout. */
function bodyTimeout(config: Config): number {
  return config.backend.timeout + Math.ceil(config.inbound.max_message_size / (64 * 1024));
}

/**
 * Haraka's own limit for one hook of this plugin, above the worst case of ours so that ours always fire
 * first: two connects (a refused early XCLIENT starts over with EHLO) and one reply timeout per reply,
 * (1 + k) for the early try, (5 + k) for the full greeting with STARTTLS, 2 for MAIL+RCPT, where k <= 8
 * XCLIENT commands (at most one per attribute). At the end of data: a replay of a lost session (a new
 * greeting, then MAIL and the recipients), a keepalive NOOP's reply still on its way, the DATA reply, the
 * body, the end-of-data reply.
 */
function hookLimit(config: Config): number {
  const { backend } = config;
  const greetingLimit = backend.rdns_timeout + 2 * backend.connect_timeout + 24 * backend.timeout;
  const messageLimit = greetingLimit + 3 * backend.timeout + bodyTimeout(config) + backend.data_timeout;
  return Math.ceil(Math.max(greetingLimit, messageLimit) + 5);
}

export function renderForwardFiles(config: Config, header: FileHeader): RenderedPluginFiles {
  const ini = forwardIni(config);
  return {
    'mailproxy-forward.ini': renderIni(header(WATCHED), [
      iniSection('main', ini.main, {
        bind: 'Connect from the WireGuard address: the one host the backend trusts with XCLIENT.',
        data_timeout: 'The wait for the reply after the end of data (content filters run then).',
        body_timeout: 'The longest the message data may take to reach the backend: backend.timeout + max_message_size at 64 KB/s.',
        keepalive: 'NOOP to the backend after this many quiet seconds while a transaction waits for its client; 0: none (a lost session is replayed).',
        reuse_sessions: "Keep a client's idle backend session for the next client (XCLIENT again in it); the backend must authorize XCLIENT for every client identity.",
      }),
      iniSection('store_and_forward', ini.store_and_forward, {
        enabled: 'Keep mail for known recipients while the backend cannot be reached.',
        pickup_dir: "haraka-out's pickup directory: a DSN to a sender whose SPF passed is written there, and haraka-out sends it.",
      }),
    ]),
    'mailproxy-forward.timeout': renderList(`${header(RESTART)}\nSeconds Haraka allows one hook of mailproxy-forward; the plugin's own timers answer 4xx well before.`, [
      String(hookLimit(config)),
    ]),
    host_list: renderList(
      `${header(WATCHED)}\nDomains haraka-in accepts mail for.`,
      config.domains.map((domain) => domain.toLowerCase()),
    ),
  };
}

/** The settings; `reload` runs when mailproxy-forward.ini changes. */
export function readForwardSettings(config: HarakaConfig, reload?: () => void): Settings {
  const cfg = config.get('mailproxy-forward.ini', { booleans: BOOLEANS }, reload) as IniAsRead<ForwardIni>;
  const main = cfg.main ?? {};
  const me = config.get('me') as string | null;
  const smtpIni = config.get('smtp.ini') as { main?: { inactivity_timeout?: unknown } };
  return {
    host: String(main.host),
    port: Number(main.port),
    bind: main.bind ? String(main.bind) : undefined,
    connectTimeoutMs: Number(main.connect_timeout) * 1000,
    replyTimeoutMs: Number(main.timeout) * 1000,
    dataTimeoutMs: Number(main.data_timeout ?? 600) * 1000,
    bodyTimeoutMs: Number(main.body_timeout ?? main.timeout) * 1000,
    keepAliveMs: Number(main.keepalive ?? 0) * 1000,
    requireXclient: main.require_xclient === true,
    starttls: main.starttls === true,
    reuseSessions: main.reuse_sessions === true,
    rdnsTimeoutMs: Number(main.rdns_timeout ?? 3) * 1000,
    heloName: me ?? 'localhost',
    // Haraka's own default when smtp.ini does not set it (server.js).
    clientTimeoutMs: (Number(smtpIni.main?.inactivity_timeout) || 300) * 1000,
    storeAndForward: storeAndForwardSettings(cfg.store_and_forward ?? {}),
  };
}

/** A key the file does not name takes the config schema's default. */
function storeAndForwardSettings(store: NonNullable<IniAsRead<ForwardIni>['store_and_forward']>): StoreForwardSettings {
  return {
    enabled: store.enabled === true,
    dir: store.dir === undefined ? '' : String(store.dir),
    pickupDir: store.pickup_dir === undefined ? '' : String(store.pickup_dir),
    maxDiskBytes: Number(store.max_disk_mb ?? 1024) * MB,
    maxAgeMs: Number(store.max_age_days ?? 5) * DAY_MS,
    drainSessions: Number(store.drain_sessions ?? 2),
    probeIntervalMs: Number(store.probe_interval ?? 5) * 1000,
    cacheSize: Number(store.cache_size ?? 20_000),
  };
}

/** The domains mail is forwarded for; `reload` runs when host_list changes. */
export function readLocalDomains(config: HarakaConfig, reload?: () => void): LocalDomains {
  const list = config.get('host_list', 'list', reload) as string[];
  return {
    localDomains: new Set(list.map((domain) => domain.toLowerCase())),
    postmasterDomain: list[0]?.toLowerCase() ?? null,
  };
}
