// haraka-out under faults, counted: every message the backend was told 250 for reaches
// the MX, and the copies the MX committed twice are explained. An MX commits a message when it sends its
// 250 (test/helpers/counting-mx.ts records that moment); haraka-out removes the queue file only after it
// has read that 250 (Haraka 3.3.4 outbound/hmail.js: the 'delivered' hooks run, then discard() unlinks).
// A kill -9 between the two, or an MX that commits and then drops the connection without a reply, leaves
// the queue file in place, and the message is delivered again: RFC 1047's duplicate window, counted here.
import { existsSync, readFileSync, watch } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK, type Topology } from '../../src/demo/topology';
import type { ConfigInput } from '../../src/config/schema';
import { startCountingMx, type CountingMx, type CountingMxOptions } from '../helpers/counting-mx';
import { eventually } from '../helpers/poll';
import { RawSmtp } from '../helpers/raw-smtp';
import { withTopology } from '../helpers/topology';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function tweak(outbound: Record<string, unknown>) {
  return (config: ConfigInput) => void (config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 3600, ...outbound });
}

/** Relays `ids` through haraka-out from the backend's address over `lanes` sessions; the ids told 250. */
async function relayAll(t: Topology, ids: string[], lanes: number): Promise<Set<string>> {
  const acknowledged = new Set<string>();
  const queue = [...ids];
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      const client = await RawSmtp.open(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend, helo: 'backend.demo.test' });
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        client.write(`MAIL FROM:<alice@demo.test>\r\nRCPT TO:<${id}@${INTERNET_DOMAIN}>\r\nDATA\r\n`);
        const codes = [(await client.reply())?.code, (await client.reply())?.code, (await client.reply())?.code];
        if (codes.join() !== '250,250,354') throw new Error(`relay ${id}: ${codes.join()}`);
        client.write(`From: alice@demo.test\r\nTo: ${id}@${INTERNET_DOMAIN}\r\nSubject: ${id}\r\n\r\nbody of ${id}\r\n.\r\n`);
        if ((await client.reply())?.code === 250) acknowledged.add(id);
      }
      client.close();
    }),
  );
  return acknowledged;
}

/**
 * When each message's queue file disappears (inotify on the queue directory): the end of haraka-out's
 * duplicate window, which opens when the MX commits. Both times are taken in this process, so the
 * difference is an upper bound (this event loop's own delays are in it).
 */
function watchQueue(dir: string): { removedAt: Map<string, number>; stop(): void } {
  const idOf = new Map<string, string>();
  const removedAt = new Map<string, number>();
  const watcher = watch(dir, (_event, name) => {
    if (!name || name.startsWith('__tmp__')) return;
    const file = path.join(dir, name);
    if (existsSync(file)) {
      try {
        const id = /\r\nSubject: (\S+)\r\n/.exec(readFileSync(file, 'latin1'))?.[1];
        if (id) idOf.set(name, id);
      } catch {
        /* gone already */
      }
    } else {
      const id = idOf.get(name);
      if (id && !removedAt.has(id)) removedAt.set(id, Date.now());
    }
  });
  return { removedAt, stop: () => watcher.close() };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

async function withMx(options: CountingMxOptions, outbound: Record<string, unknown>, body: (t: Topology, mx: CountingMx) => Promise<void>): Promise<void> {
  await withTopology({ instances: ['haraka-out'], backend: false, internet: false, tweak: tweak(outbound) }, async (t) => {
    const mx = await startCountingMx(LOOPBACK.internet, t.config.outbound.mx_port, options);
    try {
      await body(t, mx);
    } finally {
      await mx.close();
    }
  });
}

describe('haraka-out: every acknowledged message delivered, duplicates counted', () => {
  it('kill -9 while 500 messages are queued and being delivered: all delivered after the restart, duplicates only for deliveries in flight', async () => {
    const TOTAL = 500;
    const ACK_MS = 40;
    // The MX holds every message until all 500 are queued, then takes 60 ms per message, and its 250
    // needs 40 ms to arrive (half a WAN round trip); haraka-out runs 20 deliveries at once (about 200 a
    // second). The kill comes after 150: it finds 350 queued, 20 in delivery and some of those committed by
    // the MX but not yet acknowledged: the duplicates to expect.
    let release = () => undefined as void;
    const queued = new Promise<void>((resolve) => (release = resolve));
    await withMx({ holdUntil: queued, endOfDataDelayMs: 60, ackDelayMs: ACK_MS }, { concurrency: 20 }, async (t, mx) => {
      const ids = Array.from({ length: TOTAL }, (_, i) => `k${String(i).padStart(3, '0')}`);
      const queue = watchQueue(path.join(t.config.state_dir, 'haraka-out', 'queue'));
      const started = Date.now();
      const acknowledged = await relayAll(t, ids, 10);
      const queuedMs = Date.now() - started;
      expect(acknowledged.size).toBe(TOTAL);
      release();
      // Kill in the middle of the deliveries.
      await eventually('the MX to have some of them', () => mx.committed.length >= 150, { timeoutMs: 30_000 });
      const inDelivery = mx.open();
      const killedAt = Date.now();
      const old = t.haraka['haraka-out']!;
      old.child.kill('SIGKILL');
      await old.exited;
      queue.stop();
      const atKill = mx.committed.length;
      // Committed by the MX, its 250 not yet read by haraka-out: the queue file is still there.
      const unacknowledged = mx.committed.filter((c) => c.at > killedAt - ACK_MS - 5 && c.at <= killedAt + 5).length;
      expect(atKill).toBeLessThan(TOTAL - 100);
      // The window of each delivery before the kill: from the MX's 250 to the queue file's removal.
      const windows = mx.committed
        .filter((c) => c.outcome === 250 && queue.removedAt.has(c.id))
        .map((c) => queue.removedAt.get(c.id)! - (c.at + ACK_MS))
        .sort((a, b) => a - b);
      await t.restart('haraka-out');
      const restartedMs = Date.now() - killedAt;
      await eventually(`every acknowledged message at the MX (have ${new Set(mx.committed.map((c) => c.id)).size})`, () => ids.every((id) => mx.copies().has(id)), {
        timeoutMs: 60_000,
        context: () => t.haraka['haraka-out']!.output().slice(-3000),
      });
      await sleep(1500);
      const copies = mx.copies();
      const duplicates = [...copies].filter(([, n]) => n > 1).map(([id]) => id);
      // Each duplicate was committed by the MX at most ACK_MS (plus the time haraka-out takes to remove the
      // file) before the kill, and is delivered exactly twice.
      const before = duplicates.map((id) => killedAt - mx.committed.find((c) => c.id === id)!.at);
      for (const id of duplicates) expect(copies.get(id), id).toBe(2);
      for (const ms of before) expect(ms).toBeLessThanOrEqual(ACK_MS + 100);
      expect(duplicates.length).toBeLessThanOrEqual(inDelivery);
      expect(mx.committed.length).toBe(TOTAL + duplicates.length);
      console.info(
        `kill -9: ${TOTAL} relayed and acknowledged in ${queuedMs} ms; killed with ${atKill} at the MX, ${inDelivery} in delivery, ${unacknowledged} committed by the MX in the last ${ACK_MS} ms; ` +
          `restarted and reloaded in ${restartedMs} ms; all ${TOTAL} delivered, ${duplicates.length} twice` +
          (before.length ? ` (committed ${Math.min(...before)}–${Math.max(...before)} ms before the kill)` : '') +
          `; from the MX's 250 to the queue file gone, over ${windows.length} deliveries under load: median ${percentile(windows, 50)} ms, p99 ${percentile(windows, 99)} ms, max ${windows.at(-1)} ms`,
      );
    });
  }, 90_000);

  it('an MX that greylists (451, then 250) gets each message once', async () => {
    const TOTAL = 20;
    await withMx({ rcptReply: (_address, attempt) => (attempt === 1 ? '451 4.7.1 greylisted, try again later' : null) }, {}, async (t, mx) => {
      const ids = Array.from({ length: TOTAL }, (_, i) => `g${i}`);
      expect((await relayAll(t, ids, 4)).size).toBe(TOTAL);
      await eventually('every message at the MX after its retry', () => ids.every((id) => mx.copies().has(id)), {
        timeoutMs: 30_000,
        context: () => t.haraka['haraka-out']!.output().slice(-2000),
      });
      await sleep(1000);
      expect([...mx.copies().values()].every((n) => n === 1)).toBe(true);
      expect(mx.committed.length).toBe(TOTAL);
      console.info(`greylisting MX: ${TOTAL} relayed, ${TOTAL} refused once with 451, ${mx.committed.length} delivered, 0 duplicates`);
    });
  }, 60_000);

  it('an MX that drops the connection after the final dot without a reply gets each message again (the RFC 1047 duplicate)', async () => {
    const TOTAL = 10;
    await withMx({ dropAfterDot: (_id, attempt) => attempt === 1 }, {}, async (t, mx) => {
      const ids = Array.from({ length: TOTAL }, (_, i) => `d${i}`);
      expect((await relayAll(t, ids, 2)).size).toBe(TOTAL);
      await eventually('a second copy of every message', () => ids.every((id) => (mx.copies().get(id) ?? 0) >= 2), {
        timeoutMs: 30_000,
        context: () => t.haraka['haraka-out']!.output().slice(-2000),
      });
      await sleep(1000);
      // Delivered: each message was committed by the MX; the drop cost exactly one extra copy each.
      expect(ids.every((id) => mx.copies().get(id) === 2)).toBe(true);
      expect(mx.committed.filter((c) => c.outcome === 'dropped')).toHaveLength(TOTAL);
      console.info(
        `MX dropping after the dot: ${TOTAL} relayed, ${TOTAL} dropped without a reply after committing, ${TOTAL} retried: ${TOTAL} duplicates (unavoidable: no reply, no way to know)`,
      );
    });
  }, 60_000);
});
