// One UTC day of TLS sessions (types.ts), added to one outcome at a time. Pure. Bounded: at most
// MAX_POLICIES policies a day and MAX_FAILURE_ROWS failure rows a policy; what does not fit a new row is
// still counted in the policy's totals, and an outcome for a policy past the limit is dropped (and said so).
import { RESULT_TYPES, type AppliedPolicy, type DayRecord, type FailureRow, type PolicyDay, type SessionOutcome } from './types';

export const MAX_POLICIES = 2000;
export const MAX_FAILURE_ROWS = 100;

/** The UTC day (YYYY-MM-DD) of a time in ms. */
export function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function emptyDay(day: string): DayRecord {
  return { day, policies: [] };
}

const samePolicy = (a: AppliedPolicy, b: AppliedPolicy) =>
  a.type === b.type && a.domain === b.domain && a.strings.join('\n') === b.strings.join('\n') && a.mxHost.join('\n') === b.mxHost.join('\n');

const sameRow = (a: Omit<FailureRow, 'count'>, b: Omit<FailureRow, 'count'>) =>
  a.resultType === b.resultType &&
  a.sendingMtaIp === b.sendingMtaIp &&
  a.receivingMxHostname === b.receivingMxHostname &&
  a.receivingIp === b.receivingIp &&
  a.reasonCode === b.reasonCode;

/** Adds one session to the day; false when the day already holds MAX_POLICIES other policies. */
export function addOutcome(record: DayRecord, outcome: SessionOutcome): boolean {
  let entry = record.policies.find((candidate) => samePolicy(candidate.policy, outcome.policy));
  if (!entry) {
    if (record.policies.length >= MAX_POLICIES) return false;
    entry = { policy: outcome.policy, successes: 0, failures: 0, rows: [] };
    record.policies.push(entry);
  }
  if (outcome.ok) {
    entry.successes++;
    return true;
  }
  entry.failures++;
  const row = entry.rows.find((candidate) => sameRow(candidate, outcome.failure));
  if (row) row.count++;
  else if (entry.rows.length < MAX_FAILURE_ROWS) entry.rows.push({ ...outcome.failure, count: 1 });
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
