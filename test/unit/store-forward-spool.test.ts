// The store-and-forward spool in real temp directories: stored bytes come back identical, the meta is the
// commit record (recovery deletes bytes without one), tmp/ leftovers go, hold/release/delete move only
// metas, and the disk accounting survives a restart.
import { readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/tmp';
import { Spool, type StoreRequest } from '../../src/plugins/store-forward/spool';
import { idTime, isId, newId } from '../../src/plugins/store-forward/spool-meta';

const tempDir = useTempDirs('mailproxy-spool-');
const T0 = Date.UTC(2026, 0, 1);

function request(raw: StoreRequest['raw'], receivedAt = T0): StoreRequest {
  return {
    raw,
    envelope: { mailFrom: 'sender@example.com', rcptTo: ['alice@example.org', 'bob@example.org'] },
    client: {
      address: '203.0.113.9',
      port: 40512,
      rdnsName: 'mail.example.com',
      helo: 'mail.example.com',
      proto: 'ESMTPS',
      tls: { enabled: true, cipher: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' },
    },
    receivedAt,
  };
}

function rig() {
  const root = path.join(tempDir(), 'spool');
  const logs: string[] = [];
  const clock = { now: T0 + 1000 };
  const open = () => Spool.open(root, { log: (message) => logs.push(message), now: () => clock.now });
  const files = (area: string) => readdirSync(path.join(root, area)).sort();
  return { root, logs, clock, open, files };
}

/** Bytes no text codec would keep: CRLFs, a bare LF, a NUL, 8-bit bytes, a dot-stuffed line. */
const RAW = Buffer.concat([Buffer.from('Subject: t\r\n\r\n..dot\r\nbare\nlf\r\n'), Buffer.from([0, 0xff, 0xfe, 0x80]), Buffer.from('\r\n')]);

describe('ids', () => {
  it('sort by time, carry it, and are unique', () => {
    const ids = [newId(T0 + 5), newId(T0), newId(T0), newId(T0 + 1)];
    expect(ids.every(isId)).toBe(true);
    expect([...ids].sort()).toEqual([ids[1], ids[2], ids[3], ids[0]]);
    expect(idTime(ids[0]!)).toBe(T0 + 5);
    expect(new Set(Array.from({ length: 1000 }, () => newId(T0))).size).toBe(1000);
    expect(isId('../../etc/passwd')).toBe(false);
  });
});

describe('Spool', () => {
  it('stores and reads back identical bytes, from one buffer, a list of chunks or an async source', async () => {
    const { root, open, files } = rig();
    const spool = await open();
    const chunks = [RAW.subarray(0, 7), RAW.subarray(7, 20), RAW.subarray(20)];
    async function* source() {
      for (const chunk of chunks) yield chunk;
    }
    const a = await spool.store(request(RAW, T0));
    const b = await spool.store(request(chunks, T0 + 1));
    const c = await spool.store(request(source(), T0 + 2));
    expect(await spool.listReady()).toEqual([a.id, b.id, c.id]);
    for (const meta of [a, b, c]) {
      const read = await spool.read(meta.id);
      expect(read.raw.equals(RAW)).toBe(true);
      expect(read.meta).toEqual(meta);
      expect(meta.size).toBe(RAW.length);
    }
    const streamed = await spool.stream(b.id);
    expect(streamed.meta).toEqual(b);
    expect((await buffer(streamed.stream)).equals(RAW)).toBe(true);
    expect(a).toMatchObject({
      receivedAt: T0,
      envelope: { mailFrom: 'sender@example.com', rcptTo: ['alice@example.org', 'bob@example.org'] },
      client: { address: '203.0.113.9', port: 40512, rdnsName: 'mail.example.com', helo: 'mail.example.com', proto: 'ESMTPS' },
      attempts: 0,
      nextAttemptAt: null,
      held: null,
    });
    expect(files('tmp')).toEqual([]);
    expect(statSync(path.join(root, 'msg', `${a.id}.eml`)).mode & 0o777).toBe(0o600);
  });

  it('lists oldest first across a restart', async () => {
    const { open } = rig();
    const spool = await open();
    const late = await spool.store(request(RAW, T0 + 5000));
    const early = await spool.store(request(RAW, T0));
    const again = await open();
    const later = await again.store(request(RAW, T0 + 9000));
    expect(await again.listReady()).toEqual([early.id, late.id, later.id]);
  });

  it('on open, deletes a message whose meta never arrived (it was never acknowledged) and empties tmp/', async () => {
    const { root, open, logs, files } = rig();
    const spool = await open();
    const kept = await spool.store(request(RAW));
    // A crash after the bytes' rename, before the meta's: bytes in msg/ without a meta.
    const orphan = newId(T0);
    writeFileSync(path.join(root, 'msg', `${orphan}.eml`), RAW);
    // A crash while writing: half a message and half a meta in tmp/.
    writeFileSync(path.join(root, 'tmp', `${orphan}.0badc0de.eml`), RAW.subarray(0, 5));
    writeFileSync(path.join(root, 'tmp', `${orphan}.0badc0de.json`), '{"format":1,"id":');

    const again = await open();
    expect(await again.listReady()).toEqual([kept.id]);
    expect(files('msg')).toEqual([`${kept.id}.eml`]);
    expect(files('tmp')).toEqual([]);
    expect(again.recovery).toMatchObject({ tmpRemoved: 2, unacknowledged: 1, corrupt: 0, ready: 1 });
    expect(logs.join('\n')).toContain(`msg/${orphan}.eml has no meta: never acknowledged`);
  });

  it('moves an unreadable meta, or one whose bytes are gone, to corrupt/ with its bytes', async () => {
    const { root, open, logs, files } = rig();
    const spool = await open();
    const torn = await spool.store(request(RAW));
    const bodiless = await spool.store(request(RAW, T0 + 1));
    writeFileSync(path.join(root, 'ready', `${torn.id}.json`), '{"format":1,');
    unlinkSync(path.join(root, 'msg', `${bodiless.id}.eml`));

    const again = await open();
    expect(await again.listReady()).toEqual([]);
    expect(files('corrupt')).toEqual([`${torn.id}.eml`, `${torn.id}.json`, `${bodiless.id}.json`].sort());
    expect(again.usage()).toEqual({ bytes: 0, ready: 0, held: 0 });
    expect(logs.join('\n')).toMatch(/unreadable meta, moved to corrupt/);
    expect(logs.join('\n')).toMatch(/meta without its message, moved to corrupt/);
  });

  it('holds with a reason, releases, deletes held, removes delivered', async () => {
    const { open, clock, files } = rig();
    const spool = await open();
    const a = await spool.store(request(RAW));
    const b = await spool.store(request(RAW, T0 + 1));
    clock.now = T0 + 60_000;
    const held = await spool.hold(a.id, 'backend refused 550 5.7.1; SPF softfail for example.com');
    expect(held.held).toEqual({ reason: 'backend refused 550 5.7.1; SPF softfail for example.com', at: T0 + 60_000 });
    expect(await spool.listReady()).toEqual([b.id]);
    expect(await spool.listHeld()).toEqual([a.id]);
    expect((await spool.readMeta(a.id)).held?.reason).toMatch(/SPF softfail/);
    expect(spool.usage()).toMatchObject({ ready: 1, held: 1 });
    await expect(spool.remove(a.id)).rejects.toThrow(/no ready message/);

    const released = await spool.release(a.id);
    expect(released).toMatchObject({ held: null, nextAttemptAt: null });
    expect(await spool.listReady()).toEqual([a.id, b.id]);
    expect(await spool.listHeld()).toEqual([]);

    await spool.hold(b.id, 'expired');
    await spool.deleteHeld(b.id);
    await spool.remove(a.id);
    expect(await spool.listReady()).toEqual([]);
    expect(await spool.listHeld()).toEqual([]);
    expect(files('msg')).toEqual([]);
    expect(spool.usage()).toEqual({ bytes: 0, ready: 0, held: 0 });
    await expect(spool.read(a.id)).rejects.toThrow(/no message/);
    await expect(spool.read('../held/x')).rejects.toThrow(/not a message id/);
  });

  it('finishes a hold or a release that a crash interrupted between the rewrite and the rename', async () => {
    const { root, open } = rig();
    const spool = await open();
    const a = await spool.store(request(RAW));
    const b = await spool.store(request(RAW, T0 + 1));
    // a: meta rewritten as held but still in ready/; b: held, rewritten as released but still in held/.
    writeFileSync(path.join(root, 'ready', `${a.id}.json`), JSON.stringify({ ...a, held: { reason: 'refused', at: T0 } }));
    await spool.hold(b.id, 'refused');
    writeFileSync(path.join(root, 'held', `${b.id}.json`), JSON.stringify({ ...b, held: null }));

    const again = await open();
    expect(await again.listReady()).toEqual([b.id]);
    expect(await again.listHeld()).toEqual([a.id]);
    expect(again.recovery.moved).toBe(2);
    expect(again.usage()).toMatchObject({ ready: 1, held: 1 });
  });

  it('records attempts atomically, narrowing the recipients after a partial delivery', async () => {
    const { open, clock, files } = rig();
    const spool = await open();
    const a = await spool.store(request(RAW));
    clock.now = T0 + 10_000;
    await spool.recordAttempt(a.id, '451 4.3.0 <alice@example.org> try later', T0 + 310_000, ['alice@example.org']);
    const twice = await spool.recordAttempt(a.id, '452 4.2.2 over quota', T0 + 700_000);
    expect(twice).toMatchObject({
      attempts: 2,
      lastAttemptAt: T0 + 10_000,
      lastReply: '452 4.2.2 over quota',
      nextAttemptAt: T0 + 700_000,
      envelope: { rcptTo: ['alice@example.org'] },
    });
    expect(await spool.readMeta(a.id)).toEqual(twice);
    expect(files('tmp')).toEqual([]);
    const reopened = await open();
    expect(reopened.usage()).toEqual(spool.usage());
  });

  it('keeps the disk accounting exact and the same after a restart', async () => {
    const { root, open } = rig();
    const spool = await open();
    const big = Buffer.alloc(100_000, 0x61);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await spool.store(request(big, T0 + i))).id);
    await spool.hold(ids[0]!, 'refused');
    await spool.recordAttempt(ids[1]!, '451 later', T0 + 999);
    await spool.remove(ids[2]!);

    let onDisk = 0;
    for (const area of ['msg', 'ready', 'held']) {
      for (const name of readdirSync(path.join(root, area))) onDisk += statSync(path.join(root, area, name)).size;
    }
    expect(spool.usage()).toEqual({ bytes: onDisk, ready: 3, held: 1 });
    expect(spool.wouldExceed(onDisk + 100_000, 100_000)).toBe(false);
    expect(spool.wouldExceed(onDisk + 100_000, 100_001)).toBe(true);

    const again = await open();
    expect(again.usage()).toEqual(spool.usage());
    expect(again.wouldExceed(onDisk + 100_000, 100_001)).toBe(true);
  });

  it('serialises operations on one message', async () => {
    const { open } = rig();
    const spool = await open();
    const a = await spool.store(request(RAW));
    const results = await Promise.allSettled([spool.recordAttempt(a.id, '451 a', null), spool.hold(a.id, 'x'), spool.recordAttempt(a.id, '451 b', null)]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect(await spool.readMeta(a.id)).toMatchObject({ attempts: 1, held: { reason: 'x' } });
    expect(spool.usage()).toMatchObject({ ready: 0, held: 1 });
  });

  it('leaves nothing behind when a store fails', async () => {
    const { open, files } = rig();
    const spool = await open();
    async function* failing() {
      yield RAW;
      throw new Error('client went away');
    }
    await expect(spool.store(request(failing()))).rejects.toThrow('client went away');
    expect(files('tmp')).toEqual([]);
    expect(files('msg')).toEqual([]);
    expect(spool.usage()).toEqual({ bytes: 0, ready: 0, held: 0 });
  });
});
