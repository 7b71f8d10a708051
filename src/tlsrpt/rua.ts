// Reads a domain's TLS reporting policy: the `_smtp._tls.<domain>` TXT record of RFC 8460 §3, which lists
// where reports go (rua=). Pure: the caller looks the TXT records up and hands them over as DNS gives them.

/** A reporting address: an e-mail recipient or an HTTPS endpoint to POST to (§3, §5.3, §5.4). */
export type Rua = { kind: 'mailto'; address: string } | { kind: 'https'; url: string };

export type TlsRptRecord = { rua: Rua[] } | { error: string };

/** The name holding a domain's TLSRPT record. */
export function tlsRptName(domain: string): string {
  return `_smtp._tls.${domain.trim().toLowerCase().replace(/\.$/, '')}`;
}

/** "v=TLSRPTv1" at the start, then the end of the record or a field delimiter (*WSP ";"). */
const VERSION = /^v=TLSRPTv1(?=[ \t]*(?:;|$))/;
/** tlsrpt-ext-name: a letter or digit, then up to 31 letters, digits, "_", "-" or ".". */
const FIELD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** tlsrpt-ext-value: visible ASCII but "=" and ";". */
const FIELD_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;
/** What may go to RCPT TO as haraka-out's queue takes it: a dot-atom local part (RFC 5321 §4.1.2) at a
 * host name of two or more labels; anything else would be refused by the queue after the fact. */
const ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const MAILBOX = new RegExp(`^${ATOM}(?:\\.${ATOM})*@${LABEL}(?:\\.${LABEL})+$`);

function percentDecoded(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** The addresses of a mailto URI (RFC 6068): its path, percent-decoded, split on ","; the query dropped. */
function mailtoRuas(rest: string): Rua[] {
  const decoded = percentDecoded(rest.split('?')[0]!);
  if (decoded === null) return [];
  return decoded
    .split(',')
    .map((address) => address.trim())
    .filter((address) => MAILBOX.test(address))
    .map((address) => ({ kind: 'mailto', address }));
}

function httpsRuas(uri: string): Rua[] {
  try {
    const url = new URL(uri);
    return url.protocol === 'https:' && url.hostname ? [{ kind: 'https', url: url.href }] : [];
  } catch {
    return [];
  }
}

/** The usable reporting addresses of one rua= value; URIs of other schemes (and broken ones) are skipped. */
function ruaList(value: string): Rua[] {
  return value.split(',').flatMap((part) => {
    const uri = part.trim();
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
    if (scheme === 'mailto') return mailtoRuas(uri.slice('mailto:'.length));
    if (scheme === 'https') return httpsRuas(uri);
    return [];
  });
}

/** The fields after the version of one record, or why they are not a valid field list. */
function parseFields(rest: string): { fields: Array<[string, string]> } | { error: string } {
  const fields: Array<[string, string]> = [];
  const parts = rest.split(';');
  for (const [index, raw] of parts.entries()) {
    const part = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    if (part === '') {
      if (index === parts.length - 1) continue; // a trailing ";" is allowed
      return { error: 'an empty field' };
    }
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!FIELD_NAME.test(name)) return { error: `${JSON.stringify(part)} is not a name=value field` };
    // rua's list may hold spaces around its commas; any other field's value is one token.
    if (name !== 'rua' && !FIELD_VALUE.test(value)) return { error: `field ${name} has no valid value` };
    fields.push([name, value]);
  }
  return { fields };
}

/**
 * Parses the TXT records found at `_smtp._tls.<domain>` (each record as its character strings, which are
 * joined). Exactly one must start with "v=TLSRPTv1" (§3: with none or several the domain does not take
 * reports); its rua= fields give the addresses. mailto: addresses are percent-decoded with any ?query
 * dropped; https: URLs are kept; other schemes are ignored. Unknown fields are ignored. An error when no
 * usable address remains.
 */
export function parseTlsRptRecord(records: string[][]): TlsRptRecord {
  const candidates = records.map((chunks) => chunks.join('')).filter((text) => VERSION.test(text));
  if (candidates.length === 0) return { error: 'no v=TLSRPTv1 record' };
  if (candidates.length > 1) return { error: `${candidates.length} v=TLSRPTv1 records (exactly one is allowed)` };
  const record = candidates[0]!;
  const rest = record.replace(VERSION, '').replace(/^[ \t]*;?/, '');
  const parsed = parseFields(rest);
  if ('error' in parsed) return { error: `malformed TLSRPT record ${JSON.stringify(record)}: ${parsed.error}` };
  const ruaFields = parsed.fields.filter(([name]) => name === 'rua');
  if (ruaFields.length === 0) return { error: `TLSRPT record ${JSON.stringify(record)} has no rua=` };
  const seen = new Set<string>();
  const rua = ruaFields
    .flatMap(([, value]) => ruaList(value))
    .filter((entry) => {
      const key = entry.kind === 'mailto' ? `mailto:${entry.address.toLowerCase()}` : entry.url;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  if (rua.length === 0) return { error: `TLSRPT record ${JSON.stringify(record)} has no usable rua (mailto: or https:)` };
  return { rua };
}
