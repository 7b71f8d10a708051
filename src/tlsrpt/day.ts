// One UTC day of TLS sessions (types.ts), added to one outcome at a time. Pure. Bounded, because the
// policies come from the recipient domains (a hostile one can publish a new 64 KB MTA-STS policy for every
// delivery attempt): a policy is quoted with at most MAX_POLICY_STRINGS strings of at most
// MAX_STRING_LENGTH characters, a domain has at most MAX_POLICIES_PER_DOMAIN policies a day and the day
// MAX_POLICIES, a policy at most MAX_FAILURE_ROWS failure rows. What does not fit a new row is still counted
// in the policy's totals; an outcome for a policy past the limits is dropped (and said so).
import { RESULT_TYPES, type AppliedPolicy, type DayRecord, type FailureRow, type PolicyDay, type SessionOutcome } from './types';

export const MAX_POLICIES = 500;
export const MAX_POLICIES_PER_DOMAIN = 8;
export const MAX_FAILURE_ROWS = 50;
export const MAX_POLICY_STRINGS = 32;
export const MAX_STRING_LENGTH = 256;

/** The UTC day (YYYY-MM-DD) of a time in ms. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function emptyDay(day: string): DayRecord {
  return { day, policies: [] };
}

const clip = (list: string[]) => list.slice(0, MAX_POLICY_STRINGS).map((text) => text.slice(0, MAX_STRING_LENGTH));

/** The policy as a day keeps it: its strings and mx-host patterns clipped to the limits. */
function boundedPolicy(policy: AppliedPolicy): AppliedPolicy {
  return { type: policy.type, domain: policy.domain.slice(0, MAX_STRING_LENGTH), strings: clip(policy.strings), mxHost: clip(policy.mxHost) };
}

const policyKey = (policy: AppliedPolicy) => JSON.stringify([policy.type, policy.domain, policy.strings, policy.mxHost]);

/** Each day's policies by key, built once per day record (a lookup per session, not a scan). */
const indexes = new WeakMap<DayRecord, { byKey: Map<string, PolicyDay>; perDomain: Map<string, number> }>();

function indexOf(record: DayRecord) {
  let index = indexes.get(record);
  if (!index) {
    index = { byKey: new Map(), perDomain: new Map() };
    for (const entry of record.policies) {
      index.byKey.set(policyKey(entry.policy), entry);
      index.perDomain.set(entry.policy.domain, (index.perDomain.get(entry.policy.domain) ?? 0) + 1);
    }
    indexes.set(record, index);
  }
  return index;
}

const sameRow = (a: Omit<FailureRow, 'count'>, b: Omit<FailureRow, 'count'>) =>
  a.resultType === b.resultType &&
  a.sendingMtaIp === b.sendingMtaIp &&
  a.receivingMxHostname === b.receivingMxHostname &&
  a.receivingIp === b.receivingIp &&
  a.reasonCode === b.reasonCode;

/** Adds one session to the day; false when its policy is new and the day or its domain holds all it may. */
export function addOutcome(record: DayRecord, outcome: SessionOutcome): boolean {
  const policy = boundedPolicy(outcome.policy);
  const key = policyKey(policy);
  const index = indexOf(record);
  let entry = index.byKey.get(key);
  if (!entry) {
    const ofDomain = index.perDomain.get(policy.domain) ?? 0;
    if (record.policies.length >= MAX_POLICIES || ofDomain >= MAX_POLICIES_PER_DOMAIN) return false;
    entry = { policy, successes: 0, failures: 0, rows: [] };
    record.policies.push(entry);
    index.byKey.set(key, entry);
    index.perDomain.set(policy.domain, ofDomain + 1);
  }
  if (outcome.ok) {
    entry.successes++;
    return true;
  }
  entry.failures++;
  const failure = { ...outcome.failure, receivingMxHostname: outcome.failure.receivingMxHostname.slice(0, MAX_STRING_LENGTH) };
  if (failure.reasonCode !== undefined) failure.reasonCode = failure.reasonCode.slice(0, MAX_STRING_LENGTH);
  const row = entry.rows.find((candidate) => sameRow(candidate, failure));
  if (row) row.count++;
  else if (entry.rows.length < MAX_FAILURE_ROWS) entry.rows.push({ ...failure, count: 1 });
  return true;
}

const isString = (value: unknown): value is string => typeof value === 'string';
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

function parsePolicy(value: unknown): AppliedPolicy | null {
  const { type, domain, strings, mxHost } = (value ?? {}) as Record<string, unknown>;
  if ((type !== 'tlsa' && type !== 'sts') || !isString(domain)) return null;
  if (!Array.isArray(strings) || !strings.every(isString) || !Array.isArray(mxHost) || !mxHost.every(isString)) return null;
  return { type, domain, strings, mxHost };
}

function parseRow(value: unknown): FailureRow | null {
  const row = (value ?? {}) as Record<string, unknown>;
  if (!RESULT_TYPES.includes(row.resultType as never) || !isString(row.sendingMtaIp) || !isString(row.receivingMxHostname) || !isCount(row.count)) return null;
  if ((row.receivingIp !== undefined && !isString(row.receivingIp)) || (row.reasonCode !== undefined && !isString(row.reasonCode))) return null;
  return row as unknown as FailureRow;
}

function parsePolicyDay(value: unknown): PolicyDay | null {
  const { policy, successes, failures, rows } = (value ?? {}) as Record<string, unknown>;
  const parsed = parsePolicy(policy);
  if (!parsed || !isCount(successes) || !isCount(failures) || !Array.isArray(rows)) return null;
  const parsedRows = rows.map(parseRow);
  if (parsedRows.some((row) => row === null)) return null;
  return { policy: parsed, successes, failures, rows: parsedRows as FailureRow[] };
}

/** A day read back from its file, or null when the file does not hold one. */
export function parseDay(value: unknown): DayRecord | null {
  const { day, policies } = (value ?? {}) as Record<string, unknown>;
  if (!isString(day) || !/^\d{4}-\d{2}-\d{2}$/.test(day) || !Array.isArray(policies)) return null;
  const parsed = policies.map(parsePolicyDay);
  if (parsed.some((entry) => entry === null)) return null;
  return { day, policies: parsed as PolicyDay[] };
}
