// RFC 8461 (MTA-STS) parsing: the `_mta-sts` TXT record (§3.1), the HTTPS policy body (§3.2) and MX
// host matching (§4.1). Pure functions only; fetching and caching live next door.
import { domainToASCII } from 'node:url';

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  version: 'STSv1';
  mode: StsMode;
  mx: string[];
  /** Seconds. */
  maxAge: number;
}

export type ParsePolicyResult = { ok: true; policy: StsPolicy } | { ok: false; error: string };

export const MAX_POLICY_MAX_AGE = 31_557_600;

const WSP = '[ \\t]';
const FIELD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const TXT_ID = /^[A-Za-z0-9]{1,32}$/;
const TXT_EXTENSION_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;
const TXT_STS_RECORD = new RegExp(`^v=STSv1(?:${WSP}*;|${WSP}*$)`);
const POLICY_LINE = new RegExp(`^([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):${WSP}*(.*?)${WSP}*$`);
const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/** Lower-cased ASCII (A-label) form of a domain without its trailing dot, or null if it is not a host name. */
export function normalizeDomain(domain: string): string | null {
  const trimmed = domain.trim().replace(/\.$/, '');
  // domainToASCII parses a URL host, so it would turn 'a.example/x' into 'a.example': screen ASCII first.
  if (trimmed === '' || /[\x00-\x2c\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]/.test(trimmed)) return null;
  const ascii = domainToASCII(trimmed).toLowerCase();
  if (ascii === '' || ascii.length > 253) return null;
  return ascii.split('.').every((label) => label.length <= 63 && LABEL.test(label)) ? ascii : null;
}

/** The host that serves a domain's policy (§3.3): `mta-sts.<domain>`, lower-case, without a trailing dot. */
export function policyHostName(domain: string): string {
  return `mta-sts.${normalizeDomain(domain) ?? domain.toLowerCase().replace(/\.$/, '')}`;
}

/**
 * The policy id from the TXT records of `_mta-sts.<domain>` (each record as its character strings, the way
 * dns.resolveTxt returns them). Null when there is not exactly one `v=STSv1` record or it is invalid; per
 * §3.1 both mean "no policy available".
 */
export function parseStsTxt(records: string[][]): { id: string } | null {
  const candidates = records.map((chunks) => chunks.join('')).filter((record) => TXT_STS_RECORD.test(record));
  if (candidates.length !== 1) return null;
  const parts = candidates[0]!.slice('v=STSv1'.length).split(';');
  // parts[0] is the whitespace between the version and the first ';'; a final empty part is a trailing ';'.
  if (parts[parts.length - 1]!.trim() === '' && parts.length > 1) parts.pop();
  const fields = parts.slice(1).map((part) => part.replace(/^[ \t]+|[ \t]+$/g, ''));
  let id: string | undefined;
  for (const field of fields) {
    const equals = field.indexOf('=');
    if (equals <= 0) return null;
    const name = field.slice(0, equals);
    const value = field.slice(equals + 1);
    if (name === 'id') {
      if (id !== undefined || !TXT_ID.test(value)) return null;
      id = value;
    } else if (!FIELD_NAME.test(name) || !TXT_EXTENSION_VALUE.test(value)) {
      return null;
    }
  }
  return id === undefined ? null : { id };
}

function validMxPattern(pattern: string): boolean {
  const name = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  return normalizeDomain(name) === name.replace(/\.$/, '').toLowerCase() && !/[^\x21-\x7e]/.test(name);
}

/** Parses the body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`. */
export function parsePolicy(text: string): ParsePolicyResult {
  const fields = new Map<string, string>();
  const mx: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const match = POLICY_LINE.exec(line);
    if (!match) return { ok: false, error: `line ${index + 1} is not a "key: value" field: ${JSON.stringify(line.slice(0, 80))}` };
    const [, key, value] = match as unknown as [string, string, string];
    if (key === 'mx') {
      if (!validMxPattern(value)) return { ok: false, error: `line ${index + 1}: invalid mx pattern ${JSON.stringify(value)}` };
      mx.push(value.toLowerCase().replace(/\.$/, ''));
    } else if (key === 'version' || key === 'mode' || key === 'max_age') {
      if (fields.has(key)) return { ok: false, error: `line ${index + 1}: ${key} appears more than once` };
      fields.set(key, value);
    }
    // Unknown keys are ignored (§3.2) so that future extensions do not break parsing.
  }

  const version = fields.get('version');
  const mode = fields.get('mode');
  const maxAge = fields.get('max_age');
  if (version === undefined) return { ok: false, error: 'version is missing' };
  if (version !== 'STSv1') return { ok: false, error: `unsupported version ${JSON.stringify(version)}` };
  if (mode === undefined) return { ok: false, error: 'mode is missing' };
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, error: `invalid mode ${JSON.stringify(mode)}` };
  if (maxAge === undefined) return { ok: false, error: 'max_age is missing' };
  if (!/^[0-9]{1,10}$/.test(maxAge)) return { ok: false, error: `invalid max_age ${JSON.stringify(maxAge)}` };
  const seconds = Number(maxAge);
  if (seconds > MAX_POLICY_MAX_AGE) return { ok: false, error: `max_age ${seconds} exceeds ${MAX_POLICY_MAX_AGE}` };
  if (mx.length === 0 && mode !== 'none') return { ok: false, error: `mode ${mode} requires at least one mx` };
  return { ok: true, policy: { version: 'STSv1', mode, mx, maxAge: seconds } };
}

/** Whether MX host `host` is allowed by policy `mx` pattern `pattern` (§4.1). */
export function mxMatches(pattern: string, host: string): boolean {
  const wanted = pattern.toLowerCase().replace(/\.$/, '');
  const actual = host.toLowerCase().replace(/\.$/, '');
  if (wanted === '' || actual === '') return false;
  if (!wanted.startsWith('*.')) return wanted === actual;
  const suffix = wanted.slice(1);
  if (!actual.endsWith(suffix)) return false;
  const label = actual.slice(0, -suffix.length);
  return label !== '' && !label.includes('.');
}
