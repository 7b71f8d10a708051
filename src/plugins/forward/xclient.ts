// Pure XCLIENT building per Postfix's XCLIENT_README: which attributes, how values are encoded, how the
// command is split when it would be too long.
import ipaddr from 'ipaddr.js';

export interface ClientFacts {
  /** Forward-confirmed reverse DNS name, or [UNAVAILABLE] / [TEMPUNAVAIL]. */
  name: string;
  ip: string;
  port: number;
  /** The client's HELO/EHLO argument; null when it sent none. */
  helo: string | null;
  /** EHLO gives ESMTP, HELO gives SMTP. */
  esmtp: boolean;
  /** SASL login name when the client authenticated, else null (LOGIN is then not sent). */
  login: string | null;
  destAddr: string;
  destPort: number;
}

/** Longest XCLIENT command line we send (RFC 5321's 512 octets including CRLF). */
export const MAX_XCLIENT_LINE = 510;

/** Postfix refuses longer NAME/HELO values ("501 5.5.4 Error: attribute value too long"), counted in
 * bytes of the xtext-encoded value as sent. */
export const MAX_XCLIENT_NAME = 255;

function hostnameValue(value: string | null): string {
  return value === null || value === '' || xtext(value).length > MAX_XCLIENT_NAME ? '[UNAVAILABLE]' : value;
}

/** Postfix's valid_hostname(), which its XCLIENT applies to NAME ("501 5.5.4 Bad NAME syntax" otherwise, and
 * the sender would get 4xx for good): labels of letters, digits, '_' and inner '-', each at most 63 octets,
 * at most 255 in all, not all digits. A forward-confirmed PTR name can still fail it (c-ares resolves
 * `a/b.example.net`, `a*b.example.net`, `a\.b.example.net`); Postfix's own lookup calls such a name unknown. */
export function postfixValidHostname(name: string): boolean {
  if (name.length === 0 || name.length > MAX_XCLIENT_NAME) return false;
  const labels = name.split('.');
  return labels.every((label) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label)) && !/^[\d.]+$/.test(name);
}

/** NAME: [UNAVAILABLE]/[TEMPUNAVAIL] as they are, a name Postfix would refuse as [UNAVAILABLE]. */
function nameValue(name: string): string {
  return name.startsWith('[') || postfixValidHostname(name) ? hostnameValue(name) : '[UNAVAILABLE]';
}

/** RFC 3461 xtext: printable ASCII except '+' and '=' as is, everything else (spaces, controls, UTF-8 bytes) as +HH. */
export function xtext(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += byte >= 0x21 && byte <= 0x7e && byte !== 0x2b && byte !== 0x3d ? String.fromCharCode(byte) : `+${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** ADDR value: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 with the IPV6: prefix Postfix requires. */
export function xclientAddr(ip: string): string {
  const address = ipaddr.isValid(ip) ? ipaddr.process(ip).toString() : ip;
  return address.includes(':') ? `IPV6:${address}` : address;
}

/** Attribute=value pairs for the client, limited to what the backend advertised, in sending order. */
export function xclientAttributes(facts: ClientFacts, advertised: ReadonlySet<string>): [string, string][] {
  const all: [string, string | null][] = [
    ['NAME', nameValue(facts.name)],
    ['HELO', hostnameValue(facts.helo)],
    ['PROTO', facts.esmtp ? 'ESMTP' : 'SMTP'],
    ['LOGIN', facts.login],
    ['DESTADDR', xclientAddr(facts.destAddr)],
    ['DESTPORT', String(facts.destPort)],
    ['PORT', String(facts.port)],
    // ADDR goes last: some servers refuse further XCLIENT commands once ADDR is set.
    ['ADDR', xclientAddr(facts.ip)],
  ];
  return all.filter((pair): pair is [string, string] => pair[1] !== null && advertised.has(pair[0])).map(([key, value]) => [key, xtext(value)]);
}

/** One or more `XCLIENT k=v ...` lines, each at most MAX_XCLIENT_LINE octets unless a single attribute is longer. */
export function xclientCommands(attributes: [string, string][]): string[] {
  const commands: string[] = [];
  let current = 'XCLIENT';
  for (const [key, value] of attributes) {
    const token = ` ${key}=${value}`;
    if (current !== 'XCLIENT' && current.length + token.length > MAX_XCLIENT_LINE) {
      commands.push(current);
      current = 'XCLIENT';
    }
    current += token;
  }
  if (current !== 'XCLIENT') commands.push(current);
  return commands;
}
