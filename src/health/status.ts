// The report of `mailproxy health` (pure): each check's result and the whole. The statuses, their exit
// codes and how checks combine are the shared Nagios vocabulary (../report/status.ts).
import { worst, type Status } from '../report/status';

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
