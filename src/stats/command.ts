// `mailproxy stats`: the decision lines of haraka-in's log (the edge's, and the backup MX's store, drain and
// hold) from a file, or stdin (`journalctl -u mailproxy-haraka-in -o cat | mailproxy stats`), counted, and
// optionally drawn. The one effectful edge of src/stats: reading the log, writing the chart.
import { createReadStream } from 'node:fs';
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { parseDecisionLine, type ParsedDecision } from '../plugins/decision-log';
import { writeFileAtomic } from '../render/write';
import { aggregate, parseSince, refusalSeries } from './aggregate';
import { formatSummary, type LogFacts } from './format';
import { renderChart } from './svg';

/** Haraka's level tag of a line, where decision lines are written (behind any journald prefix). */
const NOTICE_OR_INFO = /(^|\s)\[(NOTICE|INFO)\]\s/;

/**
 * Only the decision lines are kept, and only those at or after `since`: a day of a busy MX's log is large.
 * The rest is counted, to say why there is nothing to count when that happens.
 */
async function readDecisions(input: Readable, since: Date | null): Promise<{ decisions: ParsedDecision[]; facts: LogFacts }> {
  const decisions: ParsedDecision[] = [];
  const facts: LogFacts = { lines: 0, noticeLines: 0, before: 0, since };
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line === '') continue;
    facts.lines += 1;
    if (NOTICE_OR_INFO.test(line)) facts.noticeLines += 1;
    const decision = parseDecisionLine(line);
    if (!decision) continue;
    if (!since || decision.time >= since) decisions.push(decision);
    else facts.before += 1;
  }
  return { decisions, facts };
}

export async function runStatsCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { since: { type: 'string' }, svg: { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  if (positionals.length > 1) throw new UsageError('stats reads one log FILE (or - or nothing for stdin)');
  const now = (io.now ?? (() => new Date()))();
  const since = values.since === undefined ? null : parseSince(values.since, now);
  if (values.since !== undefined && !since) {
    throw new UsageError(`--since ${values.since}: expected a duration like 30m, 24h, 7d or a time like 2026-05-01T12:00:00Z`);
  }
  const file = positionals[0];
  const stdin = io.stdin ?? process.stdin;
  if ((file === undefined || file === '-') && stdin.isTTY) {
    throw new UsageError('give a log FILE, or pipe the log in: journalctl -u mailproxy-haraka-in -o cat | mailproxy stats');
  }
  const input = file === undefined || file === '-' ? stdin : createReadStream(file);
  const { decisions, facts } = await readDecisions(input, since);
  const summary = aggregate(decisions);
  io.stdout.write(values.json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary, facts));
  if (values.svg) {
    const series = refusalSeries(decisions, { from: since ?? summary.from, to: since ? now : summary.to });
    await writeFileAtomic(values.svg, renderChart(series));
    if (!values.json) io.stdout.write(`chart: ${values.svg}\n`);
  }
  return 0;
}

export const command: Command = {
  name: 'stats',
  usage: [
    {
      synopsis: 'stats [FILE | -] [--since 24h] [--svg FILE] [--json]',
      about: [
        "haraka-in's edge decisions from its log (FILE, or stdin: `journalctl",
        '-u mailproxy-haraka-in -o cat | mailproxy stats`): sessions accepted',
        'and refused by check and reason, mail kept while the backend was away',
        '(stored, handed on, held); --svg draws refusals over time',
      ],
    },
  ],
  exitStyle: 'plain',
  run: runStatsCommand,
};
