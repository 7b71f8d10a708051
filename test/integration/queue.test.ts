// `mailproxy queue` against a real haraka-out: messages it cannot deliver stay in its queue directory,
// which we list, count, flush (SIGHUP) and delete from while Haraka keeps running.
import { execFile } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { INTERNET_DOMAIN, LOOPBACK, type Topology } from '../../src/demo/topology';
import { harakaBin } from '../../src/haraka/process';
import type { ConfigInput } from '../../src/config/schema';
import { formatQueueTable } from '../../src/queue/format';
import { transactionUuid, type QueueEntry } from '../../src/queue/qfile';
import { countQueue, deleteMessage, findHarakaPid, flushQueue, listQueue } from '../../src/queue/tools';
import { dataPayload, message, openSession } from '../../src/smtp/script';
import { runCli } from '../helpers/cli';
import { eventually } from '../helpers/poll';
import { useTopology, withTopology } from '../helpers/topology';

// Long retry intervals: nothing retries by itself during a test, so every new attempt is our flush.
const tweak = (config: ConfigInput) => {
  if (config.outbound) Object.assign(config.outbound, { retry_intervals: [3600], max_queue_lifetime: 3 * 3600 });
};

const queueDir = (t: Topology) => path.join(t.config.state_dir, 'haraka-out', 'queue');
const instanceDir = (t: Topology) => path.join(t.instancesDir, 'haraka-out');
const out = (t: Topology) => t.haraka['haraka-out']!;

/** Relays one message through haraka-out from the backend's address; returns the transaction uuid of the 250 reply. */
async function send(t: Topology, rcpt: string, subject: string): Promise<string> {
  const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
  expect((await session.command('MAIL FROM:<alice@demo.test>')).code).toBe(250);
  expect((await session.command(`RCPT TO:<${rcpt}>`)).code).toBe(250);
  expect((await session.command('DATA')).code).toBe(354);
  session.write(dataPayload(message(subject, 'queued for a while')));
  const reply = await session.reply();
  session.close();
  expect(reply.code).toBe(250);
  const uuid = /Message Queued \(([^)]+)\)/.exec(reply.text)?.[1];
  if (!uuid) throw new Error(`no uuid in ${reply.text}`);
  return uuid;
}

function waitFor<T>(what: string, t: Topology, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  return eventually(what, probe, { context: () => out(t).output().slice(-4000) });
}

/** The queued message of a transaction once a flushed attempt (after `mark` in the log) has failed and put it back. */
function flushed(t: Topology, uuid: string, previousFile: string, mark: number): Promise<QueueEntry> {
  return waitFor(`${uuid} back in the queue after a flush`, t, async () => {
    if (!/Temp failing \S+ for \d+ seconds: /.test(out(t).output().slice(mark))) return null;
    const listing = await listQueue(queueDir(t));
    return listing.entries.find((entry) => entry.uuid && transactionUuid(entry.uuid) === uuid && entry.file !== previousFile);
  });
}

/** The queued message of a transaction once it has failed `attempts` times and Haraka has logged why. */
function deferred(t: Topology, uuid: string, attempts: number): Promise<QueueEntry> {
  return waitFor(`${uuid} with ${attempts} attempt(s)`, t, async () => {
    const listing = await listQueue(queueDir(t), { log: out(t).output() });
    // Haraka renames the file before it logs the reason, so wait for both.
    return listing.entries.find((entry) => entry.uuid && transactionUuid(entry.uuid) === uuid && entry.attempts >= attempts && entry.lastError !== null);
  });
}

describe('mailproxy queue on a running haraka-out (no internet: deliveries temp-fail)', () => {
  const topology = useTopology({ instances: ['haraka-out'], backend: false, internet: false, tweak });
  let first: QueueEntry;
  let firstUuid = '';

  it('lists a deferred message as Haraka wrote it', async () => {
    const t = topology();
    firstUuid = await send(t, `bob@${INTERNET_DOMAIN}`, 'first');
    first = await deferred(t, firstUuid, 1);
    expect(first).toMatchObject({
      domain: INTERNET_DOMAIN,
      mailFrom: 'alice@demo.test',
      recipients: [`bob@${INTERNET_DOMAIN}`],
      attempts: 1,
      pid: out(t).child.pid,
      // Haraka defers with only "Tried all MXs"; the cause is the line it logged for the MX before that.
      lastError: `connect ECONNREFUSED ${LOOPBACK.internet}:${t.config.outbound.mx_port}`,
      lastErrorSource: 'log',
    });
    expect(out(t).output()).toMatch(/Temp failing \S+ for \d+ seconds: Tried all MXs/);
    expect(first.uuid).toBe(`${firstUuid}.1`);
    expect(Date.now() - first.queuedAt.getTime()).toBeLessThan(60_000);
    const wait = first.nextAttempt!.getTime() - Date.now();
    expect(wait).toBeGreaterThan(3500_000);
    expect(wait).toBeLessThanOrEqual(3600_000);
    expect(first.size).toBeGreaterThan(100);

    // Haraka 3.3.4 does not write the failure into the file: without its log there is no lastError.
    const fileOnly = (await listQueue(queueDir(t))).entries.find((entry) => entry.id === first.id);
    expect(fileOnly?.lastError).toBeNull();

    expect(await countQueue(queueDir(t))).toEqual({ total: 1, byDomain: { [INTERNET_DOMAIN]: 1 }, problems: 0, errorFiles: 0, inProgress: 0 });
    const table = formatQueueTable([first]);
    expect(table).toContain(first.id);
    expect(table).toContain(`connect ECONNREFUSED ${LOOPBACK.internet}:${t.config.outbound.mx_port}`);
    expect(table).not.toContain('Tried all MXs');

    // Haraka's own reader agrees (`haraka -c DIR --qlist`, read-only).
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of ['NODE_ENV', 'VITEST', 'VITEST_MODE', 'VITEST_POOL_ID', 'VITEST_WORKER_ID']) delete env[name];
    const { stdout } = await promisify(execFile)(process.execPath, [harakaBin(), '-c', instanceDir(t), '--qlist'], { env, timeout: 30_000 });
    expect(stdout).toContain(`Q: ${first.file} rcpt:1 from:<alice@demo.test> domain:${INTERNET_DOMAIN}`);
  });

  it('finds haraka-out by its -c dir and flushes it with SIGHUP: an immediate new attempt that spends no attempt', async () => {
    const t = topology();
    const pid = await findHarakaPid(instanceDir(t));
    expect(pid).toBe(out(t).child.pid);
    // More flushes than the message has retries left (3): none of them counts, so none can bounce it early.
    for (let round = 1; round <= 4; round++) {
      const mark = out(t).output().length;
      await flushQueue(pid!);
      const retried = await flushed(t, firstUuid, first.file, mark);
      expect(retried.id).toBe(first.id);
      expect(retried.attempts).toBe(1);
      // Back on the schedule it had (Haraka keeps whole seconds of the wait).
      expect(Math.abs(retried.nextAttempt!.getTime() - first.nextAttempt!.getTime())).toBeLessThanOrEqual(1000);
      const after = out(t).output().slice(mark);
      expect(after).toContain('[core] Flushing the temp fail queue');
      expect(after).toContain('retrying ahead of schedule (queue flush): a failure will not count');
      expect(after).toMatch(/Temp failing \S+ for 3\d{3} seconds: Tried all MXs \(a flushed attempt: not counted, back on its schedule\)/);
      expect(after).not.toMatch(/bouncing mail/);
      first = retried;
    }
    expect(out(t).child.exitCode).toBeNull();
  });

  it('deletes one message while Haraka runs: gone for good, no bounce, the other one still retried', async () => {
    const t = topology();
    const keptUuid = await send(t, `carol@${INTERNET_DOMAIN}`, 'second');
    const kept = await deferred(t, keptUuid, 1);

    const result = await deleteMessage(queueDir(t), first.id);
    expect(result).toEqual({ matched: [first.file], removed: [first.file], refused: [], vanished: [] });
    expect((await listQueue(queueDir(t))).entries.map((entry) => entry.id)).toEqual([kept.id]);

    // Haraka still holds the deleted message in memory: make it retry now and watch it give up.
    const mark = out(t).output().length;
    await flushQueue(out(t).child.pid!);
    await waitFor('Haraka to drop the deleted message', t, async () => /was deleted: dropping this delivery[\s\S]*Not sending bounce/.test(out(t).output().slice(mark)));
    expect((await flushed(t, keptUuid, kept.file, mark)).attempts).toBe(1);
    expect(out(t).child.exitCode).toBeNull();
    // No bounce was queued for the sender, and nothing else appeared.
    const listing = await listQueue(queueDir(t));
    expect(listing.entries.map((entry) => entry.id)).toEqual([kept.id]);
    expect(listing.problems).toEqual([]);
    expect(listing.errorFiles).toEqual([]);
    expect(readdirSync(queueDir(t))).toHaveLength(1);
    expect(out(t).output()).not.toMatch(/delivered file=/);
  });

  it('is what `mailproxy queue list|count|flush` prints for the running instance', async () => {
    const t = topology();
    const uuid = await send(t, `cli@${INTERNET_DOMAIN}`, 'cli');
    await deferred(t, uuid, 1);
    const run = (...argv: string[]) => runCli(['queue', ...argv, '--config', t.configPath, '--instances', t.instancesDir]);
    const list = await run('list', '--json');
    expect(list.code).toBe(0);
    expect(JSON.parse(list.text).entries.some((entry: { recipients: string[] }) => entry.recipients.includes(`cli@${INTERNET_DOMAIN}`))).toBe(true);
    // With haraka-out's log (`journalctl … | mailproxy queue list --log -` on the VPS): the cause, not "Tried all MXs".
    const logFile = path.join(t.config.state_dir, 'haraka-out.log');
    writeFileSync(logFile, out(t).output());
    const table = await run('list', '--log', logFile);
    expect(table.code).toBe(0);
    const row = table.out.split('\n').find((line) => line.includes(`cli@${INTERNET_DOMAIN}`));
    expect(row).toMatch(new RegExp(`connect ECONNREFUSED ${LOOPBACK.internet.replace(/\./g, '\\.')}:${t.config.outbound.mx_port}$`));
    expect(table.out).not.toContain('Tried all MXs');
    const count = await run('count');
    expect(count.code).toBe(0);
    expect(count.text).toContain(INTERNET_DOMAIN);
    const flush = await run('flush');
    expect(flush.text).toMatch(/asked haraka-out \(pid \d+\) to retry every deferred message now/);
    expect(flush.text).toContain('a retry that fails does not count as an attempt and keeps its place in the retry schedule');
    expect(flush.code).toBe(0);
  });
});

describe('mailproxy queue when the MX comes back', () => {
  it('never delivers a deleted message, while the flushed one is delivered', async () => {
    let busy = true;
    await withTopology(
      {
        instances: ['haraka-out'],
        backend: false,
        internet: { rejectRecipient: () => (busy ? '450 4.2.1 mailbox busy' : null) },
        tweak,
      },
      async (t) => {
        const dropUuid = await send(t, `bob@${INTERNET_DOMAIN}`, 'to be deleted');
        const keepUuid = await send(t, `carol@${INTERNET_DOMAIN}`, 'to be delivered');
        const drop = await deferred(t, dropUuid, 1);
        await deferred(t, keepUuid, 1);
        // The remote's reply, from the log, since the file does not carry it.
        expect(drop.lastError).toBe(`Some recipients temp failed: <bob@${INTERNET_DOMAIN}> (<bob@${INTERNET_DOMAIN}> 450 4.2.1 mailbox busy)`);

        expect((await deleteMessage(queueDir(t), drop.id)).removed).toEqual([drop.file]);
        busy = false;
        const mark = out(t).output().length;
        await flushQueue((await findHarakaPid(instanceDir(t)))!);
        const [delivered] = await t.internet!.waitForMessages(1, 20_000);
        expect(delivered?.subject).toBe('to be delivered');
        // The deleted one: mailproxy-outbound sees its file is gone and ends the delivery before any
        // connection is made (Haraka alone would connect and stall on the missing body), without a bounce.
        await waitFor('Haraka to drop the deleted message', t, async () => /was deleted: dropping this delivery[\s\S]*Not sending bounce/.test(out(t).output().slice(mark)));
        expect(out(t).output().slice(mark)).not.toContain('Reading from the data stream failed');
        expect(t.internet!.messages.map((received) => received.subject)).toEqual(['to be delivered']);
        // Haraka unlinks a delivered message's file asynchronously, after logging the delivery.
        await waitFor('the queue to empty', t, async () => readdirSync(queueDir(t)).length === 0);
        expect(readdirSync(queueDir(t))).toEqual([]);
        expect(out(t).child.exitCode).toBeNull();
      },
    );
  }, 60_000);
});
