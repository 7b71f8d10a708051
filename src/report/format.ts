// The parts every report prints alike (pure): the Nagios status line that opens the text, and the JSON
// around the checks.
import { STATUS_CODE, STATUSES, type Status } from './status';

/** `mailproxy <command> <STATUS>: 3 OK, 1 WARNING` (each status in `word`'s spelling; `no checks` for none). */
export function statusLine(command: string, status: Status, checks: readonly { status: Status }[], word: (status: Status) => string = (each) => each): string {
  const counts = STATUSES.filter((each) => checks.some((check) => check.status === each))
    .map((each) => `${checks.filter((check) => check.status === each).length} ${word(each)}`)
    .join(', ');
  return `mailproxy ${command} ${status}: ${counts || 'no checks'}`;
}

/** The report as JSON: `lead`'s fields, then the status, its exit code, when it was checked and the checks. */
export function reportJson(lead: Record<string, unknown>, status: Status, checkedAt: Date, checks: unknown[]): string {
  return `${JSON.stringify({ ...lead, status, exit_code: STATUS_CODE[status], checked_at: checkedAt.toISOString(), checks }, null, 2)}\n`;
}
