// mailproxy-edge's files, both ways: renderEdgeFiles writes mailproxy-edge.ini (and the hook timeout) from
// the config's `edge` section, readSettings turns what haraka-config read of it back into the plugin's
// settings, checking every value (a bad one is replaced by its default and told). EdgeIni is the file
// both sides name.
import ipaddr from 'ipaddr.js';
import { ipInRanges, parseAddressOrCidr, parseAnswerRange, type AnswerRange, type Cidr } from '../../config/net';
import type { Config } from '../../config/schema';
import { iniSection, renderIni, renderList, RESTART, WATCHED, type FileHeader, type IniAsRead, type RenderedPluginFiles } from '../../render/ini';
import type { HarakaConfig } from '../haraka/plugin';
import type { ListEntry } from './dnsbl';

export type Mode = 'off' | 'log' | 'refuse';

export interface EdgeSettings {
  lookupTimeoutMs: number;
  servers: string[];
  /** Clients no edge check applies to. */
  allow: Cidr[];
  /** The appliance's own addresses, normalized: never checked (health probes come from them), never logged. */
  own: Set<string>;
  earlyTalker: { mode: Mode; pauseMs: number };
  helo: { mode: Mode; names: Set<string> };
  dnsbl: { mode: Mode; threshold: number; zones: ListEntry[]; allowZones: ListEntry[] };
}

/** A DNS list's section: dnsbl_zone_1, dnsbl_zone_2, ... and dnswl_zone_1, ... */
type ListSection = `dnsbl_zone_${number}` | `dnswl_zone_${number}`;

interface ZoneIni {
  zone: string;
  weight: number;
  answers: string[];
}

/** mailproxy-edge.ini: seconds, modes and lists as written; one section per DNS list, numbered from 1. */
export interface EdgeIni {
  main: { lookup_timeout: number; dns_servers: string; allow: string[]; own: string[] };
  early_talker: { mode: Mode; pause: number };
  helo: { mode: Mode; names: string[] };
  dnsbl: { mode: Mode; threshold: number };
  [list: ListSection]: ZoneIni;
}

type EdgeIniAsRead = IniAsRead<EdgeIni>;
type Section = Record<string, unknown>;

const MODES: readonly Mode[] = ['off', 'log', 'refuse'];

function zoneSections(prefix: 'dnsbl_zone_' | 'dnswl_zone_', entries: Config['edge']['dnsbl']['zones']): [ListSection, ZoneIni][] {
  return entries.map((entry, index) => [`${prefix}${index + 1}`, { zone: entry.zone.toLowerCase(), weight: entry.weight, answers: entry.answers }]);
}

/** The values of mailproxy-edge.ini for this config. */
export function edgeIni(config: Config): EdgeIni {
  const { edge } = config;
  return {
    main: {
      lookup_timeout: edge.lookup_timeout,
      dns_servers: config.dns.servers.join(','),
      allow: edge.allow,
      own: [config.public_ipv4, ...(config.public_ipv6 ? [config.public_ipv6] : []), config.wireguard.address],
    },
    early_talker: { mode: edge.early_talker.mode, pause: edge.early_talker.pause },
    helo: { mode: edge.helo.mode, names: [config.hostname, ...config.domains].map((name) => name.toLowerCase()) },
    dnsbl: { mode: edge.dnsbl.mode, threshold: edge.dnsbl.threshold },
    ...Object.fromEntries([...zoneSections('dnsbl_zone_', edge.dnsbl.zones), ...zoneSections('dnswl_zone_', edge.dnsbl.dnswl_zones)]),
  };
}

export function renderEdgeFiles(config: Config, header: FileHeader): RenderedPluginFiles {
  const ini = edgeIni(config);
  const { edge } = config;
  // Haraka's limit for one hook: the banner pause or the DNS lists' wait at HELO, with room to spare, so
  // that the plugin's own timers always decide first.
  const hookLimit = Math.ceil(edge.early_talker.pause + 2 * edge.lookup_timeout + 5);
  const lists = Object.keys(ini).filter((name): name is ListSection => /^dns[bw]l_zone_\d+$/.test(name));
  return {
    'mailproxy-edge.ini': renderIni(header(WATCHED), [
      iniSection('main', ini.main, {
        dns_servers: 'Where the DNS lists are asked. Empty: the system resolver.',
        own: 'The appliance’s own addresses: never checked (health probes come from them).',
      }),
      iniSection('early_talker', ini.early_talker, { pause: 'A pause set where there was none takes effect when haraka-in restarts.' }),
      iniSection('helo', ini.helo, { names: 'A client announcing one of these names (or an own address) claims to be this server.' }),
      iniSection('dnsbl', ini.dnsbl),
      ...lists.map((name) => iniSection(name, ini[name])),
    ]),
    'mailproxy-edge.timeout': renderList(`${header(RESTART)}\nSeconds Haraka allows one hook of mailproxy-edge; the plugin's own timers decide well before.`, [String(hookLimit)]),
  };
}

/** Defaults here match the config schema's; the rendered file always names every key. */
export const DEFAULT_LOOKUP_TIMEOUT_MS = 800;

function list(value: unknown): string[] {
  if (Array.isArray(value))
    return value
      .map(String)
      .map((item) => item.trim())
      .filter(Boolean);
  if (typeof value === 'string')
    return value
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean);
  return [];
}

function mode(value: unknown, fallback: Mode, problems: string[], where: string): Mode {
  if (value === undefined) return fallback;
  if (MODES.includes(value as Mode)) return value as Mode;
  problems.push(`${where}: ${String(value)} is not off, log or refuse; using ${fallback}`);
  return fallback;
}

function number(value: unknown, fallback: number, min: number, max: number, problems: string[], where: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (Number.isFinite(n) && n >= min && n <= max) return n;
  problems.push(`${where}: ${String(value)} is outside ${min}..${max}; using ${fallback}`);
  return fallback;
}

function entries(ini: EdgeIniAsRead, prefix: string, problems: string[]): ListEntry[] {
  const out: ListEntry[] = [];
  const sections = ini as Record<string, Section | undefined>;
  const names = Object.keys(ini)
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
  for (const name of names) {
    const section = sections[name] ?? {};
    const zone = String(section.zone ?? '')
      .trim()
      .toLowerCase()
      .replace(/\.$/, '');
    if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/.test(zone)) {
      problems.push(`[${name}] zone=${String(section.zone)} is not a DNS zone; entry ignored`);
      continue;
    }
    const answers: AnswerRange[] = [];
    for (const text of list(section.answers)) {
      const range = parseAnswerRange(text);
      if (range) answers.push(range);
      else problems.push(`[${name}] answers: ${text} is no address, CIDR or range; ignored`);
    }
    out.push({ zone, weight: number(section.weight, 1, 0, 1000, problems, `[${name}] weight`), answers });
  }
  return out;
}

function normalizedIp(text: string): string | null {
  return ipaddr.isValid(text) ? ipaddr.process(text).toNormalizedString() : null;
}

/** The settings, and what in the file was wrong (each replaced by its default, to be logged). */
export function readSettings(ini: EdgeIniAsRead): { settings: EdgeSettings; problems: string[] } {
  const problems: string[] = [];
  const main = ini.main ?? {};
  const allow: EdgeSettings['allow'] = [];
  for (const text of list(main.allow)) {
    const range = parseAddressOrCidr(text);
    if (range) allow.push(range);
    else problems.push(`[main] allow: ${text} is no CIDR; ignored`);
  }
  const own = new Set(
    list(main.own)
      .map(normalizedIp)
      .filter((ip): ip is string => ip !== null),
  );
  const earlyTalker = ini.early_talker ?? {};
  const helo = ini.helo ?? {};
  const dnsbl = ini.dnsbl ?? {};
  const settings: EdgeSettings = {
    lookupTimeoutMs: number(main.lookup_timeout, DEFAULT_LOOKUP_TIMEOUT_MS / 1000, 0.01, 30, problems, '[main] lookup_timeout') * 1000,
    servers: list(main.dns_servers),
    allow,
    own,
    earlyTalker: {
      mode: mode(earlyTalker.mode, 'refuse', problems, '[early_talker] mode'),
      pauseMs: number(earlyTalker.pause, 0, 0, 300, problems, '[early_talker] pause') * 1000,
    },
    helo: {
      mode: mode(helo.mode, 'log', problems, '[helo] mode'),
      names: new Set(list(helo.names).map((name) => name.toLowerCase().replace(/\.$/, ''))),
    },
    dnsbl: {
      mode: mode(dnsbl.mode, 'off', problems, '[dnsbl] mode'),
      threshold: number(dnsbl.threshold, 1, 1, 100_000, problems, '[dnsbl] threshold'),
      zones: entries(ini, 'dnsbl_zone_', problems),
      allowZones: entries(ini, 'dnswl_zone_', problems),
    },
  };
  if (settings.dnsbl.mode !== 'off' && settings.dnsbl.zones.length === 0) {
    problems.push('[dnsbl] mode is not off but no dnsbl_zone_N section names a zone; DNSBL checks are off');
    settings.dnsbl.mode = 'off';
  }
  return { settings, problems };
}

/** The settings as the plugin reads them from Haraka's config; `reload` runs when the file changes. */
export function readEdgeSettings(config: HarakaConfig, reload?: () => void): { settings: EdgeSettings; problems: string[] } {
  return readSettings(config.get('mailproxy-edge.ini', reload) as EdgeIniAsRead);
}

/** True when the client is on the allow list. */
export function isAllowed(settings: EdgeSettings, ip: string): boolean {
  return ipInRanges(ip, settings.allow);
}

/** True for the appliance's own addresses. */
export function isOwnAddress(settings: EdgeSettings, ip: string): boolean {
  const normalized = normalizedIp(ip);
  return normalized !== null && settings.own.has(normalized);
}
