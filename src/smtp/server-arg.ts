// `mailproxy send --server IP:PORT`: the address to connect to, or what is wrong with the value (pure).
// A host name is refused, never looked up: the system resolver is not one this appliance trusts.
import { parseHostPort, parseIp, type HostPort } from '../config/net';

const EXAMPLE = 'e.g. 192.0.2.1:25 or [2001:db8::1]:25';

export function parseServerOption(value: string | undefined): { ok: true; server: HostPort } | { ok: false; error: string } {
  if (value === undefined) return { ok: false, error: `--server IP:PORT is required (${EXAMPLE})` };
  const server = parseHostPort(value);
  if (server) return { ok: true, server };
  const fail = (why: string) => ({ ok: false as const, error: `--server ${JSON.stringify(value)}: ${why}` });
  if (value.trim() === '') return fail(`empty; expected an IP address and a port (${EXAMPLE})`);
  const bare = parseIp(value.replace(/^\[(.*)\]$/, '$1'));
  // 2001:db8::1:25 is itself an IPv6 address: with a port, one goes in brackets.
  if (bare?.kind() === 'ipv6' && !value.startsWith('[')) return fail(`an IPv6 address without a port; write [ADDRESS]:PORT, e.g. [2001:db8::1]:25`);
  if (bare) return fail(`no port; expected IP:PORT (${EXAMPLE})`);
  const split = /^(\[[^\]]*\]|[^:]*)(?::([^:]*))?$/.exec(value);
  if (!split) return fail(`expected an IP address and a port, an IPv6 address in brackets (${EXAMPLE})`);
  const bracketed = (split[1] ?? '').startsWith('[');
  const host = (split[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  const port = split[2];
  if (host === '') return fail(`no address before the port; expected IP:PORT (${EXAMPLE})`);
  const address = parseIp(host);
  // Only [IPv4] gets here as an address in brackets: a bracketed IPv6 with a valid port parsed above.
  if (address && bracketed && address.kind() === 'ipv4') return fail(`brackets are for IPv6 addresses only: ${host}:${port ?? 'PORT'}`);
  if (!address && /^[0-9.]+$/.test(host)) return fail(`${host} is not an IPv4 address (four numbers 0-255, as in 192.0.2.1)`);
  if (!address) {
    return fail(
      `the host must be an IP address, not a name (${host}): mailproxy send never asks the system resolver; look the address up yourself (e.g. dig +short MX, then A) and pass IP:PORT`,
    );
  }
  if (port === undefined) return fail(`no port; expected IP:PORT (${EXAMPLE})`);
  return fail(`port ${JSON.stringify(port)} is not a number from 1 to 65535`);
}
