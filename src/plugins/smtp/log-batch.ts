// Haraka writes each log line with its own process.stdout.write, and stdout (a pipe, or journald's socket
// under systemd) is written synchronously on Linux: one write(2) per line, about ten per SMTP session at
// log level info, which under a flood was a tenth of haraka-in's CPU (docs/BENCHMARKS.md). Here the lines
// go out together, in order: at the end of the turn of the event loop, or before the next SMTP reply is
// written (flushLogLines, called by the reply patch: what was logged before a reply is out before the
// client reads it), and the lines still pending when the process exits by its exit handler.
// Haraka's own `log` hook is the entry: a plugin that answers OK has handled the line (logger.log_respond
// then writes nothing). Where Haraka would colour (a terminal) or stamp (log_timestamps) its lines, it
// keeps writing them itself.

let pending: string[] = [];
let scheduled = false;

/** Writes the pending lines now. */
export function flushLogLines(): void {
  if (pending.length === 0) return;
  const text = pending.join('');
  pending = [];
  process.stdout.write(text);
}

let exitHandler = false;

/** Queues one log line (without its newline) for the write at the end of this turn of the event loop. */
export function writeLogLine(line: string): void {
  pending.push(`${line}\n`);
  if (!exitHandler) {
    exitHandler = true;
    process.on('exit', flushLogLines);
  }
  if (scheduled) return;
  scheduled = true;
  setImmediate(() => {
    scheduled = false;
    flushLogLines();
  });
}

/** Whether Haraka's logger writes lines plainly (no colours, no timestamps), so that they can be batched. */
export function plainLogLines(logger: { timestamps?: unknown }): boolean {
  return !logger.timestamps && !process.stdout.isTTY;
}
