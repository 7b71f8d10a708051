// The results of `mailproxy selftest` and `mailproxy doctor` (pure): one finding per check, with
// MXToolbox's name for it and, for anything not passing, the exact fix. Statuses, exit codes and how checks
// combine are health's too (status.ts): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, the worst wins
// (CRITICAL > WARNING > UNKNOWN > OK). People read them as pass, warn, fail and unknown.
import { reportJson, statusLine } from './format';
import { timedVerdict, worst, type Status, type Verdict } from './status';

/** What a pure judge decides: health's Verdict plus the fix, spelled out (the record, the setting). */
export interface Finding extends Verdict {
  /** For anything not OK: what to change, exactly (a DNS record, a config key, whom to ask). */
  fix?: string;
}

export interface CheckLine {
  /** Stable name: `<check>@<subject>`, e.g. `banner@192.0.2.25:25`, `spf.ip@example.com`. */
  name: string;
  /** MXToolbox's name for the same verdict (its check, or the lookup that shows it); null when it has none. */
  mxtoolbox: string | null;
  status: Status;
  detail: string;
  fix: string | null;
  ms: number;
  metrics: Record<string, number>;
}

export interface FindingsReport {
  command: 'selftest' | 'doctor';
  status: Status;
  checkedAt: Date;
  checks: CheckLine[];
}

/** The word people read for each status. */
export const RESULT_WORD: Record<Status, string> = { OK: 'pass', WARNING: 'warn', CRITICAL: 'fail', UNKNOWN: 'unknown' };

export function findingsReport(command: FindingsReport['command'], checks: CheckLine[], checkedAt: Date): FindingsReport {
  return { command, status: worst(checks.map((check) => check.status)), checkedAt, checks };
}

export function checkLine(name: string, mxtoolbox: string | null, finding: Finding, ms = 0): CheckLine {
  return {
    name,
    mxtoolbox,
    status: finding.status,
    detail: finding.detail,
    fix: finding.status === 'OK' ? null : (finding.fix ?? null),
    ms: Math.round(ms),
    metrics: finding.metrics ?? {},
  };
}

/** Runs a probe and its judge, timing them; a throw is a check that could not look (UNKNOWN). */
export async function timedCheck(name: string, mxtoolbox: string | null, body: () => Promise<Finding>): Promise<CheckLine> {
  const { verdict, ms } = await timedVerdict(name, body);
  return checkLine(name, mxtoolbox, verdict, ms);
}

/**
 * A summary line (Nagios style), then one line per check: pass/warn/fail/unknown, our name, MXToolbox's
 * name, what was found; under a check that does not pass, its fix on a line of its own.
 */
export function formatFindings(report: FindingsReport): string {
  const nameWidth = Math.max(0, ...report.checks.map((check) => check.name.length));
  const mxWidth = Math.max(0, ...report.checks.map((check) => (check.mxtoolbox ?? '-').length));
  const lines = [statusLine(report.command, report.status, report.checks, (status) => RESULT_WORD[status])];
  for (const check of report.checks) {
    const word = RESULT_WORD[check.status].toUpperCase().padEnd(7);
    lines.push(`${word}  ${check.name.padEnd(nameWidth)}  ${(check.mxtoolbox ?? '-').padEnd(mxWidth)}  ${check.detail}`);
    if (check.fix) lines.push(`${' '.repeat(9)}fix: ${check.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

export function formatFindingsJson(report: FindingsReport): string {
  return reportJson(
    { command: report.command },
    report.status,
    report.checkedAt,
    report.checks.map((check) => ({
      name: check.name,
      mxtoolbox: check.mxtoolbox,
      status: check.status,
      result: RESULT_WORD[check.status],
      detail: check.detail,
      fix: check.fix,
      ms: check.ms,
      metrics: check.metrics,
    })),
  );
}
