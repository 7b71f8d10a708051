// `mailproxy queue ... --instance in` on a real spool in a temp state_dir: the tables of ready and held mail,
// the count, release and delete through the command line, and the command line's rules (held and release
// are haraka-in's; flush is haraka-out's; an unknown instance is a usage error).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Spool } from '../../src/plugins/store-forward/spool';
import { listKept } from '../../src/plugins/store-forward/spool-admin';
import type { StoredMeta } from '../../src/plugins/store-forward/spool-meta';
import { formatKeptCount, formatKeptListing } from '../../src/queue/kept-format';
import { runCli } from '../helpers/cli';
import { writeSmallConfig } from '../helpers/config-file';
import { useTempDirs } from '../helpers/tmp';

const tempDir = useTempDirs('mailproxy-queue-kept-');
const T0 = Date.UTC(2026, 0, 1, 12);

async function rig(enabled = true) {
  const dir = tempDir();
  const config = writeSmallConfig(dir, { inbound: { store_and_forward: { enabled } } });
  const root = path.join(dir, 'state', 'haraka-in', 'store', 'spool');
  const spool = await Spool.open(root, { log: () => undefined, now: () => T0 + 3_600_000 });
  const store = (receivedAt: number, rcptTo: string[]) =>
    spool.store({
      raw: Buffer.from('Subject: kept\r\n\r\nbody\r\n'),
      envelope: { mailFrom: 'sender@example.net', rcptTo },
      client: { address: '198.51.100.4', port: 40000, rdnsName: null, helo: 'mail.example.net', proto: 'ESMTP', tls: { enabled: false, cipher: null, version: null } },
      receivedAt,
    });
  const queue = (...argv: string[]) => runCli(['queue', ...argv, '--config', config]);
  return { root, spool, store, queue };
}

describe('the kept mail tables', () => {
  it('show ready and held messages with age, sender, recipients, attempts, next try, last reply and held reason', async () => {
    const { root, spool, store } = await rig();
    const a = await store(T0, ['alice@example.com', 'bob@example.com']);
    const b = await store(T0 + 1_800_000, ['carol@example.com']);
    await spool.recordAttempt(b.id, '451 4.3.0 try again later', T0 + 3_900_000);
    await spool.hold(a.id, 'refused by the backend: 554 5.7.1 Refused by content filter');
    const text = formatKeptListing(await listKept(root), { now: new Date(T0 + 3_660_000) });
    expect(text.split('\n')).toEqual([
      'ready, waiting for the backend: 1',
      'ID                              AGE  FROM                RECIPIENTS         ATTEMPTS  NEXT   LAST REPLY',
      `${b.id}  31m  sender@example.net  carol@example.com  1         in 4m  451 4.3.0 try again later`,
      '',
      'held for you (mailproxy queue release ID, or delete ID --instance in): 1',
      'ID                              AGE    FROM                RECIPIENTS            ATTEMPTS  HELD  REASON',
      `${a.id}  1h01m  sender@example.net  alice@example.com +1  0         1m    refused by the backend: 554 5.7.1 Refused by content filter`,
    ]);
    expect(formatKeptListing(await listKept(root), { heldOnly: true, now: new Date(T0 + 3_660_000) }).split('\n')[0]).toMatch(/^held for you/);
  });

  it('say so when there is no spool, and count with the oldest of each area', async () => {
    expect(formatKeptListing({ root: '/s', exists: false, ready: [], held: [], problems: [], corrupt: [] })).toMatch(/^nothing kept: no spool at \/s/);
    const counted = formatKeptCount({ exists: true, ready: 2, held: 1, corrupt: 1, bytes: 5000, oldestReadyAt: T0, oldestHeldAt: T0 + 60_000 }, '/s', new Date(T0 + 7_200_000));
    expect(counted.split('\n')).toEqual(['ready 2 (oldest 2h00m)', 'held 1 (oldest 1h59m)', '5 KB on disk', '1 in corrupt/: see `mailproxy queue list --instance in`']);
  });
});

describe('mailproxy queue --instance in', () => {
  it('lists, counts, releases and deletes through the command line', async () => {
    const { store, spool, queue } = await rig();
    const a = await store(T0, ['alice@example.com']);
    const b = await store(T0 + 1, ['bob@example.com']);
    await spool.hold(a.id, 'refused by the backend: 550 5.1.1 gone');
    await spool.hold(b.id, 'not delivered within 5 days');

    const listed = await queue('list', '--instance', 'in');
    expect(listed.code).toBe(0);
    expect(listed.out).toContain('ready, waiting for the backend: 0');
    expect(listed.out).toContain(a.id);
    const json = JSON.parse((await queue('held', '--json')).out) as { held: StoredMeta[] };
    expect(json.held.map((meta) => [meta.id, meta.held?.reason])).toEqual([
      [a.id, 'refused by the backend: 550 5.1.1 gone'],
      [b.id, 'not delivered within 5 days'],
    ]);
    expect((await queue('count', '--instance', 'in')).out).toMatch(/^ready 0\nheld 2 \(oldest /);

    const released = await queue('release', a.id);
    expect([released.code, released.out]).toEqual([0, expect.stringMatching(new RegExp(`^released ${a.id} .*next probe \\(every 5 s\\)`))]);
    expect(await spool.listReady()).toEqual([a.id]);
    const deleted = await queue('delete', b.id, '--instance', 'in');
    expect([deleted.code, deleted.out.trim()]).toEqual([0, `deleted held message ${b.id} (from sender@example.net to 1 recipient)`]);
    expect(await spool.listHeld()).toEqual([]);

    const again = await queue('delete', a.id, '--instance', 'in');
    expect([again.code, again.err]).toEqual([1, `mailproxy queue: ${a.id} is not held: it waits for delivery to the backend\n`]);
  });

  it('notes that haraka-in does not hand released mail on while store_and_forward is off', async () => {
    const { store, spool, queue } = await rig(false);
    const a = await store(T0, ['alice@example.com']);
    await spool.hold(a.id, 'refused');
    const released = await queue('release', a.id, '--instance', 'in');
    expect(released.code).toBe(0);
    expect(released.err).toMatch(/inbound\.store_and_forward is off/);
  });

  it('refuses what does not fit an instance, as usage errors', async () => {
    const { queue } = await rig();
    expect(await queue('held', '--instance', 'out')).toMatchObject({ code: 2, err: expect.stringContaining('haraka-out holds nothing') });
    expect(await queue('list', '--instance', 'elsewhere')).toMatchObject({ code: 2, err: expect.stringContaining('expected in (haraka-in') });
    expect(await queue('flush', '--instance', 'in')).toMatchObject({ code: 2, err: expect.stringContaining('hands kept mail on by itself') });
    expect(await queue('release')).toMatchObject({ code: 2, err: expect.stringContaining('usage: mailproxy queue release ID') });
  });
});
