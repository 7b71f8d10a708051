// Pure: which of the keys a user must set still hold documentation values (the example config's
// mx.example.com, 203.0.113.25, example.com). Names under RFC 2606's example domains and addresses in
// RFC 5737's and RFC 3849's documentation ranges never reach a real VPS; a config that holds them was
// not edited yet, and DNS records printed for it would be wrong.
import type { Config } from './schema';
import { ipInCidr, parseCidr, type Cidr } from './net';

const DOCUMENTATION_NAMES = ['example.com', 'example.net', 'example.org', 'example'];
const DOCUMENTATION_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32'].map((text) => parseCidr(text) as Cidr);

export function isDocumentationName(name: string): boolean {
  const lower = name.toLowerCase().replace(/\.$/, '');
  return DOCUMENTATION_NAMES.some((suffix) => lower === suffix || lower.endsWith(`.${suffix}`));
}

export function isDocumentationIp(ip: string): boolean {
  return DOCUMENTATION_RANGES.some((range) => ipInCidr(ip, range));
}

export interface Placeholder {
  key: string;
  value: string;
}

/** Every must-set key that still holds a documentation value, in the order of the example file. */
export function placeholders(config: Config): Placeholder[] {
  const found: Placeholder[] = [];
  if (isDocumentationName(config.hostname)) found.push({ key: 'hostname', value: config.hostname });
  if (isDocumentationIp(config.public_ipv4)) found.push({ key: 'public_ipv4', value: config.public_ipv4 });
  if (config.public_ipv6 && isDocumentationIp(config.public_ipv6)) found.push({ key: 'public_ipv6', value: config.public_ipv6 });
  config.domains.forEach((domain, index) => {
    if (isDocumentationName(domain)) found.push({ key: `domains[${index}]`, value: domain });
  });
  return found;
}

export function placeholderWarning(found: Placeholder[]): string | null {
  if (found.length === 0) return null;
  const list = found.map(({ key, value }) => `${key} ${value}`).join(', ');
  return `${list}: still the example's documentation values; set your own (hostname, public_ipv4, domains) before you publish DNS records or start the units`;
}
