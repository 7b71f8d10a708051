// The soak's report: what was offered, accepted, delivered, lost (must be 0), duplicated (must be 0),
// smuggled through (must be 0), refused by reply code, bad inputs by kind, latencies and peak RSS.
import { percentile } from '../percentile';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { ReceivedMessage } from '../../src/testpeers/smtp-sink';
import type { Direction, Ledger } from './ledger';
import type { Options } from './options';

export type InstanceName = 'haraka-in' | 'haraka-out';

export interface SoakOutcome {
  options: Options;
  ledger: Ledger;
  /** Scenarios run, by name. */
  offered: Map<string, number>;
  backendMessages: ReceivedMessage[];
  mxMessages: ReceivedMessage[];
  peakRssKb: Record<InstanceName, number>;
}

/** The resident set size of a process, in KB (0 when it is gone). */
export function rssKb(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Copies delivered of each message, by its id (the subject). */
export function deliveredCounts(messages: readonly ReceivedMessage[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of messages) counts.set(message.subject, (counts.get(message.subject) ?? 0) + 1);
  return counts;
}

/** The report's lines, and whether anything was lost, duplicated or smuggled. */
export function soakReport(outcome: SoakOutcome): { text: string; failed: boolean } {
  const { options, ledger, offered, backendMessages, mxMessages, peakRssKb } = outcome;
  const lines: string[] = [];
  const counts: Record<Direction, Map<string, number>> = { in: deliveredCounts(backendMessages), out: deliveredCounts(mxMessages) };
  let lostTotal = 0;
  let duplicatedTotal = 0;
  for (const direction of ['in', 'out'] as const) {
    const mine = [...ledger.tracked.values()].filter((entry) => entry.direction === direction);
    const acc = mine.filter((entry) => entry.acceptedAt !== null);
    const delivered = mine.filter((entry) => counts[direction].has(entry.id));
    const lost = acc.filter((entry) => !counts[direction].has(entry.id));
    const duplicated = mine.filter((entry) => (counts[direction].get(entry.id) ?? 0) > 1);
    const withoutAccept = delivered.filter((entry) => entry.acceptedAt === null);
    const retried = acc.filter((entry) => entry.attempts > 1).length;
    lostTotal += lost.length;
    duplicatedTotal += duplicated.length;
    // Good mail only: slow clients pause on purpose, and carriers are not timed.
    const latencies = acc
      .filter((entry) => entry.kind.startsWith('good mail'))
      .map((entry) => entry.latencyMs)
      .filter((ms): ms is number => ms !== null)
      .sort((a, b) => a - b);
    lines.push(
      `${direction === 'in' ? 'inbound  (client → haraka-in → backend)' : 'outbound (backend → haraka-out → MX)   '}: offered ${mine.length}, accepted ${acc.length} (${retried} after a retry), delivered ${delivered.length}, lost ${lost.length}, duplicated ${duplicated.length}, delivered but never accepted ${withoutAccept.length}`,
      `  latency of good mail accepted (connect to 250 of the attempt that got it): p50 ${percentile(latencies, 50)} ms, p90 ${percentile(latencies, 90)} ms, p99 ${percentile(latencies, 99)} ms, max ${latencies.at(-1) ?? NaN} ms`,
    );
    for (const entry of lost.slice(0, 10)) lines.push(`  LOST ${entry.id} (${entry.kind}, accepted after ${entry.attempts} attempts)`);
    for (const entry of duplicated.slice(0, 10)) lines.push(`  DUPLICATED ${entry.id} (${entry.kind}, ${counts[direction].get(entry.id)} copies, ${entry.attempts} attempts)`);
  }
  const smuggled = backendMessages.filter((message) => /^smuggled-/.test(message.mailFrom) || /^smuggled /.test(message.subject)).length;
  const report = [
    `mailproxy soak: ${options.minutes} min, ${options.rate} arrivals/s, a fault every ${options.faultEvery} s, seed ${options.seed} (node ${process.version}, ${os.cpus().length} CPUs)`,
    `traffic offered: ${[...offered].map(([kind, n]) => `${kind} ${n}`).join(', ')}`,
    `faults injected: ${[...ledger.faults].map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none'}`,
    ...lines,
    `lost ${lostTotal} (must be 0), duplicated ${duplicatedTotal} (must be 0), smuggled messages delivered ${smuggled} (must be 0)`,
    `refused, by reply code (0: connection broken or no reply):`,
    ...[...ledger.refused].sort(([a], [b]) => a.localeCompare(b)).map(([key, n]) => `  ${key}: ${n}`),
    `bad inputs tried, by kind (answered as expected / tried):`,
    ...[...ledger.badInputs].sort(([a], [b]) => a.localeCompare(b)).map(([kind, { tried, expected }]) => `  ${kind}: ${expected}/${tried}`),
    `peak RSS: haraka-in ${(peakRssKb['haraka-in'] / 1024).toFixed(1)} MB, haraka-out ${(peakRssKb['haraka-out'] / 1024).toFixed(1)} MB`,
    ...(ledger.unexpected.length ? [`unexpected: ${ledger.unexpected.length}`, ...ledger.unexpected.slice(0, 20).map((line) => `  ${line}`)] : []),
  ];
  return { text: `${report.join('\n')}\n`, failed: lostTotal !== 0 || duplicatedTotal !== 0 || smuggled !== 0 };
}
