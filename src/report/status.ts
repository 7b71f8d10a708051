// The Nagios vocabulary of `mailproxy health`, `selftest` and `doctor` (pure): the four plugin states, their
// exit codes, how several checks combine into one result, and a check run with its time.
//
// Exit codes follow the Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (and a usage
// error is UNKNOWN, not 2). Combining checks, the worst wins in the order
// CRITICAL > WARNING > UNKNOWN > OK: the monitoring-plugins' `max_state_alt` order, so a check that could
// not look (no systemctl in a container, no permission for `wg`) never hides a problem another check
// did find. Exit 3 therefore means "nothing is known to be wrong, but something could not be checked".

export const STATUSES = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;
export type Status = (typeof STATUSES)[number];

/** The Nagios exit code, also the value of the status metrics. */
export const STATUS_CODE: Record<Status, number> = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 };

const SEVERITY: Record<Status, number> = { OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3 };

/** The worst of `statuses` (OK for none). */
export function worst(statuses: Iterable<Status>): Status {
  let result: Status = 'OK';
  for (const status of statuses) if (SEVERITY[status] > SEVERITY[result]) result = status;
  return result;
}

/** What a pure check decides from the facts a probe measured. */
export interface Verdict {
  status: Status;
  /** One line, for people: what was found and, when it is not OK, what to look at. */
  detail: string;
  /** Numbers measured on the way, exported as `mailproxy_<name>` metrics (seconds, bytes, counts). */
  metrics?: Record<string, number>;
}

/** Runs a probe and its judge, timing them; a throw is a check that could not look (UNKNOWN): a bug or an
 * environment nobody foresaw, so nothing is known. */
export async function timedVerdict<V extends Verdict>(name: string, body: () => Promise<V>): Promise<{ verdict: V | Verdict; ms: number }> {
  const started = performance.now();
  let verdict: V | Verdict;
  try {
    verdict = await body();
  } catch (err) {
    verdict = { status: 'UNKNOWN', detail: `${name}: ${(err as Error).message}` };
  }
  return { verdict, ms: performance.now() - started };
}
