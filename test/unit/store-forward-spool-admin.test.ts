// The operator's side of the store-and-forward spool (spool-admin.ts) in real temp directories, next to an
// open Spool playing the running haraka-in: listing and counting read only; a release lands in ready/ for
// the owner's drain, with a fresh lifetime and the held meta's owner; a delete takes meta and bytes; a
// release interrupted between its two steps is finished by the owner's recovery, which keeps the ready
// meta; the owner's recount() picks up what the operator changed.
import { chownSync, copyFileSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/tmp';
import { Spool, type StoreRequest } from '../../src/plugins/store-forward/spool';
import { deleteHeldMessage, keptFigures, KeptError, listKept, releaseHeld } from '../../src/plugins/store-forward/spool-admin';
import { drainStep, DRAIN_DEFAULTS } from '../../src/plugins/store-forward/drain-plan';

const tempDir = useTempDirs('mailproxy-spool-admin-');
const T0 = Date.UTC(2026, 0, 1);
const RAW = Buffer.from('Subject: kept\r\n\r\nbody\r\n');

function request(receivedAt: number, rcpt = 'alice@example.org'): StoreRequest {
  return {
    raw: RAW,
    envelope: { mailFrom: 'sender@example.com', rcptTo: [rcpt] },
    client: { address: '203.0.113.9', port: 40512, rdnsName: null, helo: 'mail.example.com', proto: 'ESMTP', tls: { enabled: false, cipher: null, version: null } },
    receivedAt,
  };
}

async function rig() {
  const root = path.join(tempDir(), 'spool');
  const logs: string[] = [];
  const clock = { now: T0 + 1000 };
  const open = () => Spool.open(root, { log: (message) => logs.push(message), now: () => clock.now });
  const spool = await open();
  const files = (area: string) => readdirSync(path.join(root, area)).sort();
  return { root, logs, clock, open, spool, files };
}

describe('listing and counting kept mail from another process', () => {
  it('reports a spool that does not exist yet as empty', async () => {
    const root = path.join(tempDir(), 'never');
    expect(await listKept(root)).toMatchObject({ exists: false, ready: [], held: [], problems: [], corrupt: [] });
    expect(await keptFigures(root)).toEqual({ exists: false, ready: 0, held: 0, corrupt: 0, bytes: 0, oldestReadyAt: null, oldestHeldAt: null });
    expect(existsSync(root)).toBe(false);
  });

  it('lists ready and held metas oldest first, and counts them with the owner’s figures', async () => {
    const { root, spool, files } = await rig();
    const a = await spool.store(request(T0));
    const b = await spool.store(request(T0 + 5000, 'bob@example.org'));
    const c = await spool.store(request(T0 + 9000));
    await spool.hold(a.id, 'refused by the backend: 554 5.7.1 no');
    await spool.recordAttempt(c.id, '451 4.3.0 later', T0 + 400_000);
    const tmpBefore = files('tmp');

    const listing = await listKept(root);
    expect(listing.ready.map((meta) => meta.id)).toEqual([b.id, c.id]);
    expect(listing.held.map((meta) => [meta.id, meta.held?.reason])).toEqual([[a.id, 'refused by the backend: 554 5.7.1 no']]);
    expect(listing.ready[1]).toMatchObject({ attempts: 1, lastReply: '451 4.3.0 later' });
    expect((await listKept(root, ['held'])).ready).toEqual([]);

    const figures = await keptFigures(root);
    expect(figures).toEqual({ exists: true, ...spool.usage(), corrupt: 0, oldestReadyAt: T0 + 5000, oldestHeldAt: T0 });
    expect(files('tmp')).toEqual(tmpBefore);
  });

  it('reports an unreadable meta and corrupt/ without failing the listing', async () => {
    const { root, spool, open } = await rig();
    const a = await spool.store(request(T0));
    const b = await spool.store(request(T0 + 1));
    writeFileSync(path.join(root, 'ready', `${b.id}.json`), '{"torn');
    const listing = await listKept(root);
    expect(listing.ready.map((meta) => meta.id)).toEqual([a.id]);
    expect(listing.problems).toEqual([{ file: `ready/${b.id}.json`, error: expect.stringMatching(/not a readable meta/) }]);
    await open(); // the owner's restart moves it aside
    expect((await listKept(root)).corrupt).toEqual([b.id]);
    expect((await keptFigures(root)).corrupt).toBe(1);
  });
});

describe('release and delete while the owner runs', () => {
  it('releases a held message into ready/ with a fresh lifetime, for the owner to drain', async () => {
    const { root, spool, clock, files } = await rig();
    const a = await spool.store(request(T0));
    clock.now = T0 + 6 * 86_400_000;
    await spool.hold(a.id, 'not delivered within 5 days');
    expect(drainStep(a, clock.now, DRAIN_DEFAULTS).action).toBe('expired');

    const released = await releaseHeld(root, a.id, clock.now + 1000);
    expect(released).toMatchObject({ id: a.id, held: null, nextAttemptAt: null, releasedAt: clock.now + 1000 });
    expect(files('held')).toEqual([]);
    expect(files('ready')).toEqual([`${a.id}.json`]);
    expect(files('tmp')).toEqual([]);
    // What the owner reads is the released meta, and its drain delivers it rather than expiring it again.
    const seen = await spool.readMeta(a.id);
    expect(seen).toEqual(released);
    expect(drainStep(seen, clock.now + 2000, DRAIN_DEFAULTS).action).toBe('deliver');
    expect(await spool.listReady()).toEqual([a.id]);
    expect((await spool.read(a.id)).raw).toEqual(RAW);
  });

  it('gives the released meta the owner of the held one (a root operator, a haraka-in user)', async () => {
    const { root, spool } = await rig();
    const a = await spool.store(request(T0));
    await spool.hold(a.id, 'refused');
    chownSync(path.join(root, 'held', `${a.id}.json`), 65534, 65534);
    await releaseHeld(root, a.id);
    const stat = statSync(path.join(root, 'ready', `${a.id}.json`));
    expect([stat.uid, stat.gid, stat.mode & 0o777]).toEqual([65534, 65534, 0o600]);
  });

  it('deletes a held message, meta and bytes; refuses ready or unknown ids and names where they are', async () => {
    const { root, spool, files } = await rig();
    const a = await spool.store(request(T0));
    const b = await spool.store(request(T0 + 1));
    await spool.hold(a.id, 'refused');
    const deleted = await deleteHeldMessage(root, a.id);
    expect(deleted.id).toBe(a.id);
    expect(files('held')).toEqual([]);
    expect(files('msg')).toEqual([`${b.id}.eml`]);

    await expect(deleteHeldMessage(root, b.id)).rejects.toThrow(/is not held: it waits for delivery/);
    await expect(releaseHeld(root, b.id)).rejects.toThrow(KeptError);
    await expect(releaseHeld(root, a.id)).rejects.toThrow(/no kept message/);
    await expect(deleteHeldMessage(root, '../ready/x')).rejects.toThrow(/not a kept message id/);
    expect(files('ready')).toEqual([`${b.id}.json`]);
  });

  it('after a release cut between its two steps: the owner keeps the ready meta, and so do list and delete', async () => {
    const { root, spool, open, files, logs } = await rig();
    const a = await spool.store(request(T0));
    await spool.hold(a.id, 'refused');
    // The released meta renamed into ready/, the held one not yet unlinked.
    const heldFile = path.join(root, 'held', `${a.id}.json`);
    const saved = path.join(tempDir(), 'held-copy.json');
    copyFileSync(heldFile, saved);
    await releaseHeld(root, a.id);
    copyFileSync(saved, heldFile);

    const listing = await listKept(root);
    expect([listing.ready.map((meta) => meta.id), listing.held]).toEqual([[a.id], []]);
    await expect(deleteHeldMessage(root, a.id)).rejects.toThrow(/was released and waits for delivery/);
    expect(files('held')).toEqual([]);
    expect(files('msg')).toEqual([`${a.id}.eml`]);

    copyFileSync(saved, heldFile);
    const restarted = await open();
    expect(await restarted.listReady()).toEqual([a.id]);
    expect(await restarted.listHeld()).toEqual([]);
    expect(restarted.usage()).toMatchObject({ ready: 1, held: 0 });
    expect(logs.some((line) => /finished an interrupted release/.test(line))).toBe(true);
  });
});

describe('Spool.recount', () => {
  it('takes the counts from the directories after an operator changed them', async () => {
    const { root, spool } = await rig();
    const a = await spool.store(request(T0));
    const b = await spool.store(request(T0 + 1));
    await spool.hold(a.id, 'refused');
    await spool.hold(b.id, 'refused');
    const before = spool.usage();
    await releaseHeld(root, a.id);
    await deleteHeldMessage(root, b.id);
    expect(spool.usage()).toEqual(before);
    expect(await spool.recount()).toBe(true);
    const { exists: _exists, corrupt: _corrupt, oldestReadyAt: _r, oldestHeldAt: _h, ...figures } = await keptFigures(root);
    expect(spool.usage()).toEqual(figures);
    expect(spool.usage()).toMatchObject({ ready: 1, held: 0 });
  });

  it('keeps its own figures when a change of the owner overlaps the scan', async () => {
    const { spool } = await rig();
    await spool.store(request(T0));
    const storing = spool.store(request(T0 + 1));
    expect(await spool.recount()).toBe(false);
    await storing;
    expect(spool.usage()).toMatchObject({ ready: 2 });
    expect(await spool.recount()).toBe(true);
    expect(spool.usage()).toMatchObject({ ready: 2 });
  });
});
