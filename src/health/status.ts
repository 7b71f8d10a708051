// The vocabulary of `mailproxy health` (pure): the four Nagios plugin states, their exit codes, and how
// several checks combine into one result.
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

export interface CheckResult {
  /** Stable name, also the `check` label of the metrics: `haraka-in.banner`, `wireguard`, ... */
  name: string;
  status: Status;
  detail: string;
  /** How long the probe took, in milliseconds. */
  ms: number;
  metrics: Record<string, number>;
}

export interface HealthReport {
  status: Status;
  checkedAt: Date;
  checks: CheckResult[];
}

export function report(checks: CheckResult[], checkedAt: Date): HealthReport {
  return { status: worst(checks.map((check) => check.status)), checkedAt, checks };
}
