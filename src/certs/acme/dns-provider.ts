// DNS-01: the provider the config names (the interface it implements: provider.ts), and the wait until a new
// TXT record is visible at the nameservers the CA will ask.
import { promises as dns } from 'node:dns';
import { readFileSync, statSync } from 'node:fs';
import type { Config } from '../../config/schema';
import { IonosProvider } from './ionos';
import type { DnsProvider } from './provider';

export type { DnsProvider, TxtRecord } from './provider';

/**
 * The API key from `acme.dns_01.api_key_file` (never from the YAML): the first non-empty line, trimmed.
 * `warn` hears about a file that others than its owner and group may read.
 */
export function readApiKey(file: string, warn: (line: string) => void): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? `acme.dns_01.api_key_file ${file} does not exist: put the API key there (one line, mode 0600)`
        : `cannot read acme.dns_01.api_key_file ${file}: ${(err as Error).message}`,
    );
  }
  if (statSync(file).mode & 0o004) warn(`warning: ${file} (the DNS API key) is readable by every user: chmod 600 it`);
  const key = text
    .split('\n')
    .map((line) => line.trim())
    .find((line) => line !== '');
  if (!key) throw new Error(`acme.dns_01.api_key_file ${file} is empty: put the API key there`);
  return key;
}

export function makeDnsProvider(config: Config, warn: (line: string) => void): DnsProvider {
  const settings = config.acme.dns_01;
  switch (settings.provider) {
    case 'ionos':
      return new IonosProvider({ apiUrl: settings.api_url, apiKey: readApiKey(settings.api_key_file, warn) });
  }
}

/** `host:port`, `[v6]:port` or a bare address, as node's Resolver.setServers takes them. */
type ServerList = string[];

export interface TxtWaitOptions {
  name: string;
  value: string;
  /** The servers to ask; each must return the value. */
  servers: ServerList;
  timeoutMs: number;
  intervalMs?: number;
  log?: (line: string) => void;
  /** Per-query timeout of the resolver (ms). */
  queryTimeoutMs?: number;
}

async function txtAt(server: string, name: string, queryTimeoutMs: number): Promise<string[] | Error> {
  const resolver = new dns.Resolver({ timeout: queryTimeoutMs, tries: 1 });
  resolver.setServers([server]);
  try {
    return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
  } catch (err) {
    return err as Error;
  }
}

/** Polls every server until each returns `value` among the TXT records of `name`; throws at the deadline. */
export async function waitForTxt(options: TxtWaitOptions): Promise<void> {
  const { name, value, servers, timeoutMs } = options;
  const intervalMs = options.intervalMs ?? 2000;
  const queryTimeoutMs = options.queryTimeoutMs ?? 2000;
  if (servers.length === 0) throw new Error(`no DNS server to ask for ${name}`);
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(servers);
  let last = new Map<string, string>();
  for (;;) {
    last = new Map();
    for (const server of [...pending]) {
      const answer = await txtAt(server, name, queryTimeoutMs);
      if (Array.isArray(answer) && answer.includes(value)) pending.delete(server);
      else last.set(server, Array.isArray(answer) ? `${answer.length} other TXT value(s)` : ((answer as NodeJS.ErrnoException).code ?? answer.message));
    }
    if (pending.size === 0) return;
    if (Date.now() + intervalMs > deadline) {
      const why = [...last].map(([server, what]) => `${server}: ${what}`).join('; ');
      throw new Error(`the TXT record ${name} did not show up within ${timeoutMs / 1000} s (acme.dns_01.propagation_timeout): ${why}`);
    }
    options.log?.(`waiting for ${name} at ${[...pending].join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * The addresses of a zone's authoritative nameservers, looked up through `lookupServers` (the config's
 * dns.servers; empty: the system resolver). IPv4 where a nameserver has it, IPv6 otherwise.
 */
export async function authoritativeServers(zone: string, lookupServers: readonly string[], port?: number): Promise<string[]> {
  const resolver = new dns.Resolver({ timeout: 3000, tries: 2 });
  if (lookupServers.length) resolver.setServers([...lookupServers]);
  let names: string[];
  try {
    names = await resolver.resolveNs(zone);
  } catch (err) {
    throw new Error(`cannot find the nameservers of ${zone}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const servers: string[] = [];
  for (const ns of names) {
    const v4 = await resolver.resolve4(ns).catch(() => [] as string[]);
    const addresses = v4.length ? v4 : await resolver.resolve6(ns).catch(() => [] as string[]);
    for (const address of addresses) {
      const host = address.includes(':') ? `[${address}]` : address;
      servers.push(port === undefined ? address : `${host}:${port}`);
    }
  }
  if (!servers.length) throw new Error(`no address found for the nameservers of ${zone} (${names.join(', ')})`);
  return servers;
}
