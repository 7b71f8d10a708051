// HELO/EHLO sanity for mailproxy-edge: what the name says about the client, without any DNS lookup.
// Haraka itself already refuses an empty HELO, control characters and 8-bit bytes in HELO.
// Not checked on purpose: whether the name resolves to the client, or an address literal matches the
// client's address. RFC 5321 §4.1.4 forbids refusing mail for that, NAT makes literals differ, and the
// backend's Postfix still sees the HELO (XCLIENT HELO=) to apply its own helo restrictions.
import ipaddr from 'ipaddr.js';

/** Why a HELO name is refused, in the order they are checked. */
export type HeloProblem = 'forged' | 'bare_ip' | 'invalid' | 'not_fqdn';

export interface HeloIdentity {
  /** hostname and the domains, lowercase: a stranger announcing one of them claims to be this MX. */
  names: ReadonlySet<string>;
  /** The appliance's own addresses, normalized (ipaddr.js toNormalizedString). */
  addresses: ReadonlySet<string>;
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/i;

function normalizedIp(text: string): string | null {
  if (!ipaddr.isValid(text)) return null;
  const address = ipaddr.parse(text);
  // Only dotted quads and IPv6: ipaddr.js also reads 0x7f.1 and 127.1.
  if (address.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
  return ipaddr.process(text).toNormalizedString();
}

/** The address inside `[192.0.2.1]` or `[IPv6:2001:db8::1]`, normalized; null when it is no valid literal. */
function literalAddress(helo: string): string | null {
  const inner = /^\[(.*)\]$/.exec(helo)?.[1];
  if (inner === undefined) return null;
  const v6 = /^IPv6:(.*)$/i.exec(inner)?.[1];
  if (v6 !== undefined) return ipaddr.IPv6.isValid(v6) ? normalizedIp(v6) : null;
  return ipaddr.IPv4.isValidFourPartDecimal(inner) ? normalizedIp(inner) : null;
}

/** The first problem with the HELO name, or null when it is fine. */
export function heloProblem(rawHelo: string, identity: HeloIdentity): HeloProblem | null {
  const helo = rawHelo.trim();
  if (helo.startsWith('[')) {
    const address = literalAddress(helo);
    if (address === null) return 'invalid';
    return identity.addresses.has(address) ? 'forged' : null;
  }
  const bare = normalizedIp(helo.replace(/^IPv6:/i, ''));
  if (bare !== null) return identity.addresses.has(bare) ? 'forged' : 'bare_ip';
  const name = helo.toLowerCase().replace(/\.$/, '');
  if (identity.names.has(name)) return 'forged';
  const labels = name.split('.');
  if (name.length === 0 || name.length > 253 || !/^[\x21-\x7e]+$/.test(name) || !labels.every((label) => LABEL.test(label))) return 'invalid';
  if (labels.length < 2 || /^\d+$/.test(labels[labels.length - 1] as string)) return 'not_fqdn';
  return null;
}

/** The refusal for each problem: code, enhanced status, text (Postfix's codes for the same checks; ASCII only, as SMTP replies are). */
export const HELO_REFUSALS: Record<HeloProblem, { code: number; subject: number; detail: number; text: string }> = {
  forged: { code: 550, subject: 7, detail: 1, text: "HELO/EHLO refused: that name is this server's, not yours" },
  bare_ip: { code: 501, subject: 5, detail: 2, text: 'HELO/EHLO refused: an address must be written as a literal, like [192.0.2.1] (RFC 5321 section 4.1.3)' },
  invalid: { code: 501, subject: 5, detail: 2, text: 'HELO/EHLO refused: not a valid host name or address literal' },
  not_fqdn: { code: 504, subject: 5, detail: 2, text: 'HELO/EHLO refused: not a fully qualified domain name (RFC 5321 section 4.1.1.1)' },
};
