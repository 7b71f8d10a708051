// mailproxy-edge.ini (rendered from the config's `edge` section) → the plugin's settings. Pure: the plugin
// reads the file through haraka-config and hands the object here.
import ipaddr from 'ipaddr.js';
import { ipInRanges, parseAddressOrCidr, parseAnswerRange, type AnswerRange, type Cidr } from '../../config/net';
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

type Section = Record<string, unknown> | undefined;
export type EdgeIni = Record<string, Section>;

const MODES: readonly Mode[] = ['off', 'log', 'refuse'];

/** Defaults here match the config schema's; the rendered file always names every key. */
export const DEFAULT_LOOKUP_TIMEOUT_MS = 800;

function list(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String).map((item) => item.trim()).filter(Boolean);
  if (typeof value === 'string') return value.split(',').map((item) => item.trim()).filter(Boolean);
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

function entries(ini: EdgeIni, prefix: string, problems: string[]): ListEntry[] {
  const out: ListEntry[] = [];
  const names = Object.keys(ini)
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
  for (const name of names) {
    const section = ini[name] ?? {};
    const zone = String(section.zone ?? '').trim().toLowerCase().replace(/\.$/, '');
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
export function readSettings(ini: EdgeIni): { settings: EdgeSettings; problems: string[] } {
  const problems: string[] = [];
  const main = ini.main ?? {};
  const allow: EdgeSettings['allow'] = [];
  for (const text of list(main.allow)) {
    const range = parseAddressOrCidr(text);
    if (range) allow.push(range);
    else problems.push(`[main] allow: ${text} is no CIDR; ignored`);
  }
  const own = new Set(list(main.own).map(normalizedIp).filter((ip): ip is string => ip !== null));
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

/** True when the client is on the allow list. */
export function isAllowed(settings: EdgeSettings, ip: string): boolean {
  return ipInRanges(ip, settings.allow);
}

/** True for the appliance's own addresses. */
export function isOwnAddress(settings: EdgeSettings, ip: string): boolean {
  const normalized = normalizedIp(ip);
  return normalized !== null && settings.own.has(normalized);
}
