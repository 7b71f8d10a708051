// `mailproxy stats`, the pure part: decision lines → counts and a time series. No clock, no files.
import type { ParsedDecision } from '../plugins/decision-log';
import { parseDecisionLine, sessionRefusal } from '../plugins/decision-log';

export interface CountsByCheck {
  total: number;
  byCheck: Record<string, number>;
  /** check → reason → count */
  byReason: Record<string, Record<string, number>>;
}

/** The backup MX (inbound.store_and_forward): its store, drain, hold and bounce lines, and its refusals. */
export interface KeptCounts {
  /** Messages kept while the backend could not be reached (`store`), and their recipients. */
  stored: { messages: number; recipients: number };
  /** Kept messages handed on to the backend (`drain`). */
  drained: number;
  /** Kept messages held for the operator (`hold`), by reason (backend_refused, max_age). */
  held: { total: number; byReason: Record<string, number> };
  /** Kept messages returned to their sender with a DSN (`bounce`: SPF passed), by reason (backend_refused, max_age). */
  returned: { total: number; byReason: Record<string, number> };
  /** Recipients and messages refused while the backend was away, by reason (not_verified, cached_bad, max_disk). */
  refused: { total: number; byReason: Record<string, number> };
}

export interface Summary {
  /** Earliest and latest decision counted; null without any. */
  from: Date | null;
  to: Date | null;
  /** Sessions the edge let through (one `accept` line each), and the messages they delivered. */
  accepted: { sessions: number; messages: number };
  /** Of those, the ones no check applied to (`exempt=`: loopback, private, allow), by why. */
  exempt: { sessions: number; messages: number; byReason: Record<string, number> };
  /** Sessions refused, by the check and reason that refused them. */
  refused: CountsByCheck;
  /** Checks in `log` mode that would have refused (the session went on). */
  logged: CountsByCheck;
  kept: KeptCounts;
}

/** The decision lines of a log text (every other line is skipped). */
export function readDecisions(text: string): ParsedDecision[] {
  const out: ParsedDecision[] = [];
  for (const line of text.split('\n')) {
    const decision = parseDecisionLine(line);
    if (decision) out.push(decision);
  }
  return out;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/**
 * `--since`: a duration back from `now` (`90s`, `30m`, `24h`, `7d`, `2w`, or several: `1d12h`) or a point
 * in time (ISO 8601, `2026-05-01`, `2026-05-01T12:00:00Z`); null when it is neither.
 */
export function parseSince(text: string, now: Date): Date | null {
  const trimmed = text.trim();
  if (/^(\d+(\.\d+)?[smhdw])+$/.test(trimmed)) {
    let seconds = 0;
    for (const [, amount, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) seconds += Number(amount) * (UNITS[unit as string] as number);
    return new Date(now.getTime() - seconds * 1000);
  }
  if (!/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(trimmed)) return null;
  const at = new Date(trimmed);
  return Number.isNaN(at.getTime()) ? null : at;
}

function bump(counts: CountsByCheck, check: string, reason: string): void {
  counts.total += 1;
  counts.byCheck[check] = (counts.byCheck[check] ?? 0) + 1;
  const reasons = (counts.byReason[check] ??= {});
  reasons[reason] = (reasons[reason] ?? 0) + 1;
}

const empty = (): CountsByCheck => ({ total: 0, byCheck: {}, byReason: {} });

function tally(counts: { total: number; byReason: Record<string, number> }, reason: string): void {
  counts.total += 1;
  counts.byReason[reason] = (counts.byReason[reason] ?? 0) + 1;
}

/** A count field of a line (`msgs`, `rcpts`): 0 when absent or not a number. */
function countField(decision: ParsedDecision, name: string): number {
  const value = Number(decision.fields[name] ?? 0);
  return Number.isFinite(value) ? value : 0;
}

/** A store, drain, hold or bounce line, or a refusal of one recipient or message while the backend was away. */
function countKept(kept: KeptCounts, decision: ParsedDecision, reason: string): void {
  if (decision.action === 'store') {
    kept.stored.messages += 1;
    kept.stored.recipients += countField(decision, 'rcpts');
  } else if (decision.action === 'drain') kept.drained += 1;
  else if (decision.action === 'hold') tally(kept.held, reason);
  else if (decision.action === 'bounce') tally(kept.returned, reason);
  else tally(kept.refused, reason);
}

/** Counts the decisions at or after `since` (all when null). */
export function aggregate(decisions: readonly ParsedDecision[], since: Date | null = null): Summary {
  const summary: Summary = {
    from: null,
    to: null,
    accepted: { sessions: 0, messages: 0 },
    exempt: { sessions: 0, messages: 0, byReason: {} },
    refused: empty(),
    logged: empty(),
    kept: { stored: { messages: 0, recipients: 0 }, drained: 0, held: { total: 0, byReason: {} }, returned: { total: 0, byReason: {} }, refused: { total: 0, byReason: {} } },
  };
  for (const decision of decisions) {
    if (since && decision.time < since) continue;
    if (!summary.from || decision.time < summary.from) summary.from = decision.time;
    if (!summary.to || decision.time > summary.to) summary.to = decision.time;
    const check = decision.check ?? 'unknown';
    const reason = decision.reason ?? 'unknown';
    if (decision.action === 'accept') {
      const messages = countField(decision, 'msgs');
      summary.accepted.sessions += 1;
      summary.accepted.messages += messages;
      const exempt = decision.fields.exempt;
      if (exempt) {
        summary.exempt.sessions += 1;
        summary.exempt.messages += messages;
        summary.exempt.byReason[exempt] = (summary.exempt.byReason[exempt] ?? 0) + 1;
      }
    } else if (sessionRefusal(decision)) {
      bump(summary.refused, check, reason);
    } else if (decision.action === 'log') {
      bump(summary.logged, check, reason);
    } else {
      countKept(summary.kept, decision, reason);
    }
  }
  return summary;
}

export interface Series {
  /** `check: reason` */
  name: string;
  /** One count per bucket. */
  counts: number[];
}

export interface TimeSeries {
  /** Start of the first bucket, ms since the epoch; bucket i starts at start + i * bucketMs. */
  start: number;
  bucketMs: number;
  buckets: number;
  /** Largest first; past `maxSeries`, the rest are summed into `other`. */
  series: Series[];
}

/** Bucket sizes a chart uses, the smallest that keeps it at most `maxBuckets` wide. */
const BUCKETS_MS = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400].map((seconds) => seconds * 1000);

/**
 * Refusals per bucket of time, one series per check and reason. The range runs from `from` (default: the
 * first refusal) to `to` (default: the last), cut into the smallest bucket size that gives at most
 * `maxBuckets` buckets, aligned to whole buckets in UTC.
 */
export function refusalSeries(decisions: readonly ParsedDecision[], options: { from?: Date | null; to?: Date | null; maxBuckets?: number; maxSeries?: number } = {}): TimeSeries {
  const refusals = decisions.filter((decision) => decision.action === 'refuse' && (!options.from || decision.time >= options.from) && (!options.to || decision.time <= options.to));
  const times = refusals.map((decision) => decision.time.getTime());
  const first = options.from?.getTime() ?? (times.length ? Math.min(...times) : 0);
  const last = options.to?.getTime() ?? (times.length ? Math.max(...times) : first);
  const maxBuckets = options.maxBuckets ?? 96;
  const bucketMs = BUCKETS_MS.find((size) => Math.floor(last / size) - Math.floor(first / size) + 1 <= maxBuckets) ?? (BUCKETS_MS.at(-1) as number);
  const start = Math.floor(first / bucketMs) * bucketMs;
  const buckets = Math.floor(last / bucketMs) - Math.floor(first / bucketMs) + 1;
  const byName = new Map<string, number[]>();
  for (const decision of refusals) {
    const name = `${decision.check ?? 'unknown'}: ${decision.reason ?? 'unknown'}`;
    const counts = byName.get(name) ?? new Array<number>(buckets).fill(0);
    byName.set(name, counts);
    const index = Math.floor((decision.time.getTime() - start) / bucketMs);
    counts[index] = (counts[index] ?? 0) + 1;
  }
  const total = (counts: number[]) => counts.reduce((sum, count) => sum + count, 0);
  const sorted = [...byName.entries()].map(([name, counts]) => ({ name, counts })).sort((a, b) => total(b.counts) - total(a.counts) || a.name.localeCompare(b.name));
  const maxSeries = options.maxSeries ?? 8;
  if (sorted.length > maxSeries) {
    const rest = sorted.splice(maxSeries - 1);
    sorted.push({ name: 'other', counts: rest.reduce((sum, series) => sum.map((count, i) => count + (series.counts[i] ?? 0)), new Array<number>(buckets).fill(0)) });
  }
  return { start, bucketMs, buckets, series: sorted };
}
