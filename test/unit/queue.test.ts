// `mailproxy queue`, against queue files written by Haraka's own outbound code (process_delivery,
// build_todo, qfile.name) in a child process, plus broken files made from them.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyQueueFile, lastErrorsFromLog, mxFailureOf, tlsPoliciesFromLog, parseQueueFile, transactionUuid } from '../../src/queue/qfile';
import { parseQueueFileName, unescapeHost } from '../../src/haraka/queue-file-name';
import { countQueue, deleteMessage, findHarakaPid, flushQueue, harakaConfigDir, listQueue } from '../../src/queue/tools';
import { formatDeleteResult, formatDuration, formatQueueCount, formatQueueListing, formatQueueTable, queueJson } from '../../src/queue/format';

const ROOT = path.resolve(__dirname, '../..');
// Haraka's qfile module is pure (no config, no logger): safe to load in the test process.
const harakaQfile = require('haraka/outbound/qfile') as {
  name(overrides?: Record<string, unknown>): string;
  parts(file: string): Record<string, unknown> | null;
};

// Runs in a child with HARAKA=<dir>, so Haraka's outbound writes into <dir>/queue exactly as it does in
// haraka-out: process_delivery() (temp file, fsync, rename) with build_todo() framing.
const GENERATOR = `
const fs = require('node:fs');
const path = require('node:path');
const outbound = require('haraka/outbound');
const { createTransaction } = require('haraka/transaction');
const { Address } = require('@haraka/email-address');
const queueDir = path.join(process.env.HARAKA, 'queue');
async function queue(from, rcpts, domain, lines) {
  const t = createTransaction(undefined, {});
  t.mail_from = new Address(from);
  t.rcpt_to = rcpts.map((r) => new Address(r));
  for (const l of lines) t.add_data(Buffer.from(l));
  t.message_stream.add_line_end();
  const todo = new outbound.TODOItem(domain, t.rcpt_to, t);
  todo.uuid = todo.uuid + '.1';
  const ok = [];
  await outbound.process_delivery(ok, todo, []);
  return { file: path.basename(ok[0]), uuid: todo.uuid, queueTime: todo.queue_time };
}
function writeTodo(file, todo, body) {
  return new Promise((resolve) => {
    const ws = fs.createWriteStream(path.join(queueDir, file));
    outbound.build_todo(todo, ws, () => ws.end(body, resolve));
  });
}
(async () => {
  const out = {};
  const body = ['Subject: hi\\r\\n', 'From: alice@demo.test\\r\\n', '\\r\\n', 'body \\u00e4\\u00f6\\r\\n'];
  out.fresh = await queue('<alice@demo.test>', ['<bob@example.net>', '<Carol@Example.NET>'], 'example.net', body);
  out.bounce = await queue('<>', ['<alice@demo.test>'], 'demo.test', ['Subject: failure\\r\\n', '\\r\\n', 'x\\r\\n']);
  const d = await queue('<alice@demo.test>', ['<dave@example.org>'], 'example.org', body);
  // What hmail.deferred_respond does after a temp failure: same arrival/uid/pid, new attempts and time.
  const parts = outbound.qfile.parts(d.file);
  parts.next_attempt = Date.now() + 3600 * 1000;
  parts.attempts = 2;
  const renamed = outbound.qfile.name(parts);
  fs.renameSync(path.join(queueDir, d.file), path.join(queueDir, renamed));
  out.deferred = { ...d, file: renamed, nextAttempt: parts.next_attempt };
  // A todo carrying dsn fields on its recipients (what Haraka before Address.toJSON wrote).
  const dsnFile = outbound.qfile.name({ next_attempt: Date.now() + 600000, attempts: 1 });
  await writeTodo(dsnFile, {
    queue_time: 1700000000000, domain: 'example.com', uuid: 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE.1.1',
    mail_from: { original: '<alice@demo.test>', original_host: 'demo.test', host: 'demo.test', user: 'alice' },
    rcpt_to: [{ original: '<busy@example.com>', host: 'example.com', user: 'busy', dsn_action: 'delayed',
      dsn_smtp_code: '450', dsn_smtp_extc: '4.2.1', dsn_status: '4.2.1', dsn_smtp_response: 'mailbox busy' }],
    notes: {}, force_tls: false,
  }, 'Subject: dsn\\r\\n\\r\\nx\\r\\n');
  out.dsn = { file: dsnFile };
  process.stdout.write('@@' + JSON.stringify(out) + '@@');
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
`;

interface Generated {
  fresh: { file: string; uuid: string; queueTime: number };
  bounce: { file: string; uuid: string; queueTime: number };
  deferred: { file: string; uuid: string; queueTime: number; nextAttempt: number };
  dsn: { file: string };
}

let work = '';
let source = '';
let made: Generated;

function freshDir(name: string): string {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(source)) copyFileSync(path.join(source, file), path.join(dir, file));
  return dir;
}

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-queue-unit-'));
  const harakaHome = path.join(work, 'haraka');
  source = path.join(harakaHome, 'queue');
  mkdirSync(source, { recursive: true });
  const env: NodeJS.ProcessEnv = { ...process.env, HARAKA: harakaHome };
  delete env.NODE_ENV;
  const output = execFileSync(process.execPath, ['-e', GENERATOR], { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 });
  const json = /@@(.*)@@/s.exec(output)?.[1];
  if (!json) throw new Error(`generator printed no result:\n${output}`);
  made = JSON.parse(json) as Generated;
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const read = (file: string) => readFileSync(path.join(source, file));

describe('queue file names', () => {
  it('parses names from Haraka qfile.name() like qfile.parts() does', () => {
    for (const overrides of [{}, { attempts: 3, next_attempt: 1_800_000_000_000 }, { host: 'mx_1:b\\c' }, { pid: 1 }]) {
      const file = harakaQfile.name(overrides);
      const ours = parseQueueFileName(file);
      const theirs = harakaQfile.parts(file)!;
      expect(ours, file).not.toBeNull();
      expect(ours!.arrival!.getTime()).toBe(theirs.arrival);
      expect(ours!.nextAttempt.getTime()).toBe(theirs.next_attempt);
      expect(ours!.attempts).toBe(theirs.attempts);
      expect(ours!.pid).toBe(theirs.pid);
      expect(ours!.uid).toBe(theirs.uid);
      expect(ours!.counter).toBe(theirs.counter);
      expect(ours!.legacy).toBe(false);
    }
    expect(parseQueueFileName(harakaQfile.name({ host: 'mx_1:b\\c' }))!.host).toBe('mx_1:b\\c');
    expect(parseQueueFileName(harakaQfile.name({ host: 'plain.example' }))!.host).toBe('plain.example');
  });

  it('reads the old 4-part form', () => {
    const name = parseQueueFileName('1484878079415_0_12345_8888.mta1.example.com');
    expect(name).toMatchObject({ arrival: null, attempts: 0, pid: 12345, uid: '8888', host: 'mta1.example.com', legacy: true });
    expect(name!.nextAttempt.getTime()).toBe(1484878079415);
    expect(harakaQfile.parts('1484878079415_0_12345_8888.mta1.example.com')).not.toBeNull();
  });

  it('undoes hostname escaping, also when a retry rename escaped it twice', () => {
    expect(unescapeHost('mx\\1371\\072b\\057c')).toBe('mx_1:b\\c');
    expect(unescapeHost('my\\057137host')).toBe('my_host');
  });

  it('rejects what Haraka skips, and classifies like outbound/queue read_parts()', () => {
    for (const bad of ['', 'README', 'a_b_c', '1_2_3_4_5_6', 'x_2_3_4_5_6_7', '1_2_3_4__6_h', '1_2_3_4_5_6_7_8', '../1_2_3_4_u_6_h']) {
      expect(parseQueueFileName(bad), bad).toBeNull();
    }
    const name = harakaQfile.name();
    expect(classifyQueueFile(name)).toBe('queue');
    expect(classifyQueueFile(`__tmp__.${name}`)).toBe('temp');
    expect(classifyQueueFile(`error.${name}`)).toBe('error');
    expect(classifyQueueFile('.nfs000001')).toBe('unknown');
  });
});

describe('queue file contents', () => {
  it('parses a message Haraka queued for two recipients of one domain', () => {
    const data = read(made.fresh.file);
    const result = parseQueueFile(made.fresh.file, data);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const name = parseQueueFileName(made.fresh.file)!;
    expect(result.entry).toEqual({
      file: made.fresh.file,
      id: name.uid,
      uuid: made.fresh.uuid,
      domain: 'example.net',
      mailFrom: 'alice@demo.test',
      recipients: ['bob@example.net', 'Carol@example.net'],
      queuedAt: new Date(made.fresh.queueTime),
      nextAttempt: name.nextAttempt,
      attempts: 0,
      lastError: null,
      lastErrorSource: null,
      tlsPolicy: null,
      size: data.length,
      pid: name.pid,
    });
    expect(data.readUInt32BE(0)).toBeLessThan(data.length);
  });

  it('parses a bounce (null sender) and a retried file', () => {
    const bounce = parseQueueFile(made.bounce.file, read(made.bounce.file));
    expect(bounce.ok && bounce.entry.mailFrom).toBe('<>');
    expect(bounce.ok && bounce.entry.recipients).toEqual(['alice@demo.test']);
    const deferred = parseQueueFile(made.deferred.file, read(made.deferred.file));
    expect(deferred.ok).toBe(true);
    if (!deferred.ok) return;
    expect(deferred.entry.attempts).toBe(2);
    expect(deferred.entry.nextAttempt?.getTime()).toBe(made.deferred.nextAttempt);
    expect(deferred.entry.domain).toBe('example.org');
  });

  it('takes lastError from recipient dsn fields when the file has them', () => {
    const result = parseQueueFile(made.dsn.file, read(made.dsn.file));
    expect(result.ok && result.entry.lastError).toBe('busy@example.com: 450 4.2.1 mailbox busy');
    expect(result.ok && result.entry.lastErrorSource).toBe('file');
    expect(result.ok && result.entry.queuedAt.toISOString()).toBe(new Date(1700000000000).toISOString());
  });

  it('parses from the header alone, given the size on disk', () => {
    const data = read(made.fresh.file);
    const header = data.subarray(0, 4 + data.readUInt32BE(0));
    const result = parseQueueFile(made.fresh.file, header, { size: data.length });
    expect(result.ok && result.entry.size).toBe(data.length);
  });

  it('never throws on a partial file: every cut inside the header is a clear error', () => {
    const data = read(made.fresh.file);
    const headerEnd = 4 + data.readUInt32BE(0);
    for (let cut = 0; cut < headerEnd; cut++) {
      const result = parseQueueFile(made.fresh.file, data.subarray(0, cut));
      expect(result.ok, `cut at ${cut}`).toBe(false);
      if (!result.ok) expect(result.error).toMatch(/empty file|truncated/);
    }
    expect(parseQueueFile(made.fresh.file, data.subarray(0, headerEnd)).ok).toBe(true);
  });

  it('reports garbage, bad JSON and missing fields without throwing', () => {
    const frame = (todo: string) => {
      const body = Buffer.from(`\n${todo}\n`);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body, Buffer.from('Subject: x\r\n\r\n')]);
    };
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('From: someone\r\nSubject: not a queue file\r\n'), /implausible/],
      [Buffer.from([0, 0, 0, 0, 1, 2]), /length is 0/],
      [frame('{"domain": "x", '), /end with '}'/],
      [frame('{"domain": x}'), /not JSON/],
      [frame('[1, {}]'), /end with '}'/],
      [frame('{"domain": "x"}'), /no rcpt_to/],
      [frame('{"domain": "x", "rcpt_to": [{"user": "a", "host": "x"}]}'), /no mail_from/],
      [frame('{"domain": "x", "rcpt_to": [42], "mail_from": "<>"}'), /unreadable recipient/],
    ];
    for (const [data, error] of cases) {
      const result = parseQueueFile(harakaQfile.name(), data);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error).toMatch(error);
    }
    for (let i = 0; i < 200; i++) {
      const random = Buffer.from(Array.from({ length: (i % 40) + 1 }, () => Math.floor(Math.random() * 256)));
      expect(() => parseQueueFile('x', random)).not.toThrow();
    }
  });

  it('maps uuids to the transaction uuid of the 250 reply', () => {
    expect(transactionUuid('D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1.2')).toBe('D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1');
  });
});

// What haraka-out logs when every MX of a domain fails to connect: the cause first, then only "Tried all MXs".
const refused = (uuid: string, file: string, causes: string[], suffix = '') =>
  [...causes.map((cause) => `[NOTICE] [${uuid}] [outbound] ${cause}`), `[INFO] [${uuid}] [outbound] Temp failing ${file} for 3600 seconds: Tried all MXs${suffix}`].join('\n');

describe('last errors from the Haraka log', () => {
  // Lines as haraka-out 3.3.4 printed them (see test/integration/queue.test.ts), with a journald prefix on some.
  const log = [
    '[NOTICE] [D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1.1] [outbound] recipient <busy@example.net> deferred: 450 4.2.1 mailbox busy',
    '[INFO] [D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1.1] [outbound] Temp failing 1795443341631_1795443341631_0_18028_2kDtOL_5_vm for 3600 seconds: Some recipients temp failed: <busy@example.net>',
    'Nov 23 14:15:41 vps haraka[18028]: [INFO] [2A7279C9-97E8-465D-9C6E-AB7357D9048B.1] [outbound] Temp failing 1795443341480_1795443341480_0_18028_2Vidda_3_vm for 60 seconds: Tried all MXs',
    '[INFO] [2A7279C9-97E8-465D-9C6E-AB7357D9048B.1] [outbound] Temp failing 1795443341480_1795443401480_1_18028_2Vidda_4_vm for 300 seconds: DNS lookup failure: Error: queryMx ETIMEOUT example.org',
    '[INFO] [-] [outbound] Temp failing not-a-queue-file for 3 seconds: ignored',
  ].join('\n');

  it('keeps the latest reason per queue id, with the remote replies that caused it', () => {
    const errors = lastErrorsFromLog(log);
    expect(errors.get('2kDtOL')).toBe('Some recipients temp failed: <busy@example.net> (<busy@example.net> 450 4.2.1 mailbox busy)');
    expect(errors.get('2Vidda')).toBe('DNS lookup failure: Error: queryMx ETIMEOUT example.org');
    expect(errors.size).toBe(2);
  });

  it('names the cause of "Tried all MXs": the last MX failure of that attempt, as Postfix mailq does', () => {
    const one = 'A0000000-0000-4000-8000-000000000001.1';
    const two = 'A0000000-0000-4000-8000-000000000002.1';
    const errors = lastErrorsFromLog(
      [
        // First attempt: refused; the second attempt (a flush) times out on one MX and is cut off by the next.
        refused(one, '1795443341480_1795443401480_1_18028_Refuse_4_vm', ['Failed to get socket: connect ECONNREFUSED 127.0.0.9:2500']),
        refused(
          two,
          '1795443341480_1795443401480_1_18028_TwoMXs_5_vm',
          [
            'Failed to get socket: connection timed out to outbound::{"port":25,"host":"192.0.2.1","localAddress":"198.51.100.7"}',
            'Ongoing connection failed to 192.0.2.2:25 : socket timeout waiting on ehlo',
          ],
          ' (a flushed attempt: not counted, back on its schedule)',
        ),
        refused(two, '1795443341480_1795447001480_1_18028_TwoMXs_6_vm', [
          'Failed to get socket: connection timed out to outbound::{"port":25,"host":"192.0.2.1"}',
          'Remote end 192.0.2.2:25 closed connection while we were processing mail. Trying next MX.',
        ]),
        // Causes logged for another uuid, or before an earlier failure, never leak into this one.
        refused('A0000000-0000-4000-8000-000000000003.1', '1795443341480_1795443341480_0_18028_NoCause_7_vm', []),
      ].join('\n'),
    );
    expect(errors.get('Refuse')).toBe('connect ECONNREFUSED 127.0.0.9:2500');
    expect(errors.get('TwoMXs')).toBe('192.0.2.2:25 closed the connection during the SMTP session (the last of 2 MX failures)');
    expect(errors.get('NoCause')).toBe('Tried all MXs');
    expect(
      lastErrorsFromLog(
        refused(
          two,
          '1795443341480_1795443401480_1_18028_TwoMXs_5_vm',
          ['Failed to get socket: connection timed out to outbound::{"port":25,"host":"192.0.2.1","localAddress":"198.51.100.7"}'],
          ' (a flushed attempt: not counted, back on its schedule)',
        ),
      ).get('TwoMXs'),
    ).toBe('connection timed out to 192.0.2.1:25 (a flushed attempt: not counted, back on its schedule)');
    expect(mxFailureOf('MX 127.0.0.1 is local, skipping since local_mx_ok=false')).toBe('MX 127.0.0.1 is this host (skipped: outbound local_mx_ok=false)');
    expect(mxFailureOf('Temp failing x for 3 seconds: y')).toBeNull();
  });

  it('keeps the TLS policy of the last attempt of each message', () => {
    const policies = tlsPoliciesFromLog(
      [
        '[INFO] [2A7279C9-97E8-465D-9C6E-AB7357D9048B.1] [outbound] TLS policy for example.org: mta-sts (MTA-STS enforce)',
        'Nov 23 14:15:41 vps haraka[18028]: [INFO] [2A7279C9-97E8-465D-9C6E-AB7357D9048B.1] [outbound] TLS policy for example.org: dane (mx.example.org dane)',
        '[INFO] [D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1.1] [outbound] TLS policy for example.net: opportunistic (no MTA-STS policy)',
        '[INFO] [-] [outbound] TLS policy for example.com: dane (no uuid: ignored)',
      ].join('\n'),
    );
    expect([...policies]).toEqual([
      ['2A7279C9-97E8-465D-9C6E-AB7357D9048B.1', 'dane'],
      ['D90DEF7D-E0C3-4359-B212-2D8F21A058E5.1.1', 'opportunistic'],
    ]);
  });
});

describe('listQueue / countQueue', () => {
  it('lists Haraka files, skips temp files, reports broken, unknown and error.* files separately', async () => {
    const dir = freshDir('list');
    const fresh = read(made.fresh.file);
    // A file still being written, a partial queue file, an error file Haraka moved aside, a stray file.
    writeFileSync(path.join(dir, `__tmp__.${harakaQfile.name()}`), fresh.subarray(0, 10));
    const partial = harakaQfile.name();
    writeFileSync(path.join(dir, partial), fresh.subarray(0, 40));
    writeFileSync(path.join(dir, `error.${harakaQfile.name()}`), fresh);
    writeFileSync(path.join(dir, `error.${harakaQfile.name()}`), Buffer.alloc(0));
    writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    const empty = harakaQfile.name();
    writeFileSync(path.join(dir, empty), '');
    mkdirSync(path.join(dir, harakaQfile.name()));
    symlinkSync(path.join(dir, made.fresh.file), path.join(dir, harakaQfile.name()));

    const listing = await listQueue(dir);
    expect(listing.entries.map((entry) => entry.file).sort()).toEqual([made.fresh.file, made.bounce.file, made.deferred.file, made.dsn.file].sort());
    expect(listing.entries[0]!.queuedAt.getTime()).toBe(1700000000000); // oldest first
    expect(listing.inProgress).toBe(1);
    const problems = Object.fromEntries(listing.problems.map((problem) => [problem.file, problem.error]));
    expect(problems[partial]).toMatch(/truncated/);
    expect(problems[empty]).toMatch(/empty file/);
    expect(problems['notes.txt']).toMatch(/not a Haraka queue file name/);
    expect(Object.values(problems).filter((error) => /regular file|symbolic link/.test(error))).toHaveLength(2);
    expect(listing.errorFiles).toHaveLength(2);
    expect(listing.errorFiles.filter((file) => file.entry?.domain === 'example.net')).toHaveLength(1);
    expect(listing.errorFiles.filter((file) => /empty/.test(file.error ?? ''))).toHaveLength(1);

    const count = await countQueue(dir);
    expect(count).toEqual({
      total: 4,
      byDomain: { 'example.net': 1, 'demo.test': 1, 'example.org': 1, 'example.com': 1 },
      problems: 5,
      errorFiles: 2,
      inProgress: 1,
    });
  });

  it('fills lastError from a log when the file has none', async () => {
    const dir = freshDir('log');
    const id = parseQueueFileName(made.deferred.file)!.uid;
    const uuid = 'A0000000-0000-4000-8000-000000000001.1';
    const log = refused(uuid, made.deferred.file, ['Failed to get socket: connect ECONNREFUSED 127.0.0.9:2500']);
    const listing = await listQueue(dir, { log });
    const entry = listing.entries.find((candidate) => candidate.id === id)!;
    expect(entry.lastError).toBe('connect ECONNREFUSED 127.0.0.9:2500');
    expect(entry.lastErrorSource).toBe('log');
    expect(formatQueueTable([entry])).toMatch(/connect ECONNREFUSED 127\.0\.0\.9:2500$/m);
  });

  it('says clearly when the directory is missing', async () => {
    await expect(listQueue(path.join(work, 'nope'))).rejects.toThrow(/does not exist/);
  });
});

describe('deleteMessage', () => {
  it('deletes a deferred message by its stable id, and nothing else', async () => {
    const dir = freshDir('delete-id');
    const id = parseQueueFileName(made.deferred.file)!.uid;
    const result = await deleteMessage(dir, id);
    expect(result).toEqual({ matched: [made.deferred.file], removed: [made.deferred.file], refused: [], vanished: [] });
    expect(readdirSync(dir).sort()).toEqual([made.fresh.file, made.bounce.file, made.dsn.file].sort());
  });

  it('finds a message Haraka renamed for a retry between our scan and our unlink', async () => {
    const dir = freshDir('delete-rename');
    const parts = harakaQfile.parts(made.deferred.file)!;
    const renamed = harakaQfile.name({ ...parts, attempts: 3, next_attempt: Date.now() + 7_200_000 });
    // The old name is what the operator saw; Haraka has renamed it since.
    renameSync(path.join(dir, made.deferred.file), path.join(dir, renamed));
    const result = await deleteMessage(dir, parseQueueFileName(made.deferred.file)!.uid);
    expect(result.removed).toEqual([renamed]);
  });

  it('refuses a due message (maybe in delivery) unless forced', async () => {
    const dir = freshDir('delete-due');
    const id = parseQueueFileName(made.fresh.file)!.uid;
    const refused = await deleteMessage(dir, id);
    expect(refused.removed).toEqual([]);
    expect(refused.refused[0]?.reason).toMatch(/due now/);
    expect(readdirSync(dir)).toContain(made.fresh.file);
    const forced = await deleteMessage(dir, id, { force: true });
    expect(forced.removed).toEqual([made.fresh.file]);
  });

  it('deletes by file name, by todo uuid and by the transaction uuid of the 250 reply', async () => {
    const dir = freshDir('delete-uuid');
    expect((await deleteMessage(dir, made.dsn.file)).removed).toEqual([made.dsn.file]);
    expect((await deleteMessage(dir, transactionUuid(made.bounce.uuid), { force: true })).removed).toEqual([made.bounce.file]);
    expect((await deleteMessage(dir, made.deferred.uuid)).removed).toEqual([made.deferred.file]);
  });

  it('deletes error.* and broken files by name, and reports unknown ids', async () => {
    const dir = freshDir('delete-error');
    const errorFile = `error.${harakaQfile.name()}`;
    writeFileSync(path.join(dir, errorFile), 'junk');
    expect((await deleteMessage(dir, errorFile)).removed).toEqual([errorFile]);
    expect(await deleteMessage(dir, 'zzzzzz')).toEqual({ matched: [], removed: [], refused: [], vanished: [] });
    await expect(deleteMessage(dir, '../etc/passwd')).rejects.toThrow(/not a queue id/);
  });

  it('refuses an id that matches two files', async () => {
    const dir = freshDir('delete-ambiguous');
    const parts = harakaQfile.parts(made.deferred.file)!;
    const twin = harakaQfile.name({ ...parts, arrival: Number(parts.arrival) + 1 });
    copyFileSync(path.join(dir, made.deferred.file), path.join(dir, twin));
    const result = await deleteMessage(dir, String(parts.uid));
    expect(result.removed).toEqual([]);
    expect(result.refused.map((refusal) => refusal.reason)).toEqual([expect.stringMatching(/matches 2 files/), expect.stringMatching(/matches 2 files/)]);
  });
});

describe('finding and signalling Haraka', () => {
  function fakeProc(processes: Record<number, { args: string[]; ppid?: number; cwd?: string }>): string {
    const proc = mkdtempSync(path.join(work, 'proc-'));
    for (const [pid, info] of Object.entries(processes)) {
      mkdirSync(path.join(proc, pid));
      writeFileSync(path.join(proc, pid, 'cmdline'), `${info.args.join('\0')}\0`);
      writeFileSync(path.join(proc, pid, 'stat'), `${pid} (node (x)) S ${info.ppid ?? 1} ${pid} ${pid} 0 -1`);
      if (info.cwd) symlinkSync(info.cwd, path.join(proc, pid, 'cwd'));
    }
    mkdirSync(path.join(proc, 'self'));
    return proc;
  }
  const node = '/usr/bin/node';
  const bin = '/opt/mailproxy/node_modules/haraka/bin/haraka';

  it('reads the config dir from a Haraka server command line only', () => {
    expect(harakaConfigDir([node, '--max-old-space-size=128', bin, '-c', '/etc/x/haraka-out'])).toBe('/etc/x/haraka-out');
    expect(harakaConfigDir([node, '/opt/haraka/haraka.js', '--configs=/srv/h'])).toBe('/srv/h');
    expect(harakaConfigDir([node, bin, '-c', '/etc/x/haraka-out', '--qlist'])).toBeNull();
    expect(harakaConfigDir([node, bin, '-c', '/etc/x/haraka-out', '-o'])).toBeNull();
    expect(harakaConfigDir([node, '/usr/bin/vim', '-c', '/etc/x/haraka-out'])).toBeNull();
  });

  it('finds the pid for an instance dir, resolving relative -c against the process cwd', async () => {
    const proc = fakeProc({
      100: { args: ['bash'] },
      200: { args: [node, bin, '-c', '/srv/instances/haraka-in'] },
      300: { args: [node, bin, '-c', 'instances/haraka-out'], cwd: '/srv' },
      400: { args: [node, bin, '-c', '/srv/instances/haraka-out', '--qstat'] },
    });
    expect(await findHarakaPid('/srv/instances/haraka-out', { procDir: proc })).toBe(300);
    expect(await findHarakaPid('/srv/instances/haraka-in/', { procDir: proc })).toBe(200);
    expect(await findHarakaPid('/srv/instances/other', { procDir: proc })).toBeNull();
  });

  it('picks the cluster master over its workers, and refuses two unrelated servers', async () => {
    const cluster = fakeProc({
      10: { args: [node, bin, '-c', '/srv/out'] },
      11: { args: [node, '/opt/haraka/haraka.js', '-c', '/srv/out'], ppid: 10 },
      12: { args: [node, '/opt/haraka/haraka.js', '-c', '/srv/out'], ppid: 10 },
    });
    expect(await findHarakaPid('/srv/out', { procDir: cluster })).toBe(10);
    const twins = fakeProc({ 10: { args: [node, bin, '-c', '/srv/out'] }, 20: { args: [node, bin, '-c', '/srv/out'] } });
    await expect(findHarakaPid('/srv/out', { procDir: twins })).rejects.toThrow(/more than one/);
  });

  it('sends SIGHUP to a Haraka server only', async () => {
    const proc = fakeProc({ 300: { args: [node, bin, '-c', '/srv/out'] }, 301: { args: ['sleep', '100'] } });
    const sent: [number, string][] = [];
    const kill = (pid: number, signal: string) => void sent.push([pid, signal]);
    await flushQueue(300, { procDir: proc, kill });
    expect(sent).toEqual([[300, 'SIGHUP']]);
    await expect(flushQueue(301, { procDir: proc, kill })).rejects.toThrow(/not a Haraka server/);
    await expect(flushQueue(302, { procDir: proc, kill })).rejects.toThrow(/no process/);
    await expect(flushQueue(1, { procDir: proc, kill })).rejects.toThrow(/not a Haraka pid/);
    expect(sent).toHaveLength(1);
  });
});

describe('formatting', () => {
  it('prints one row per message with domain, age, attempts and last error', async () => {
    const dir = freshDir('format');
    const listing = await listQueue(dir);
    const now = new Date(made.fresh.queueTime + 90 * 60_000);
    const text = formatQueueTable(listing.entries, { now });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^ID\s+DOMAIN\s+RECIPIENTS\s+FROM\s+AGE\s+ATTEMPTS\s+NEXT\s+TLS\s+LAST ERROR$/);
    const row = lines.find((line) => line.includes('example.net'))!;
    expect(row).toContain('2 rcpts');
    expect(row).toContain('1h30m');
    expect(row).toMatch(/\s0\s+due\s+-\s+-$/);
    expect(lines.find((line) => line.includes('example.com'))).toMatch(/busy@example.com: 450 4.2.1 mailbox busy$/);
    expect(formatQueueTable([])).toBe('queue is empty');
    expect(formatQueueTable(listing.entries, { now, maxErrorWidth: 10 })).toContain('busy@exam…');
    expect(formatQueueListing(listing, { now })).toContain(`4 messages in ${dir}`);
    expect(formatQueueCount(await countQueue(dir))).toMatch(/^total 4\nCOUNT\s+DOMAIN\n1\s+demo.test/);
    const json = JSON.parse(queueJson(listing)) as { entries: { queuedAt: string }[] };
    expect(json.entries[0]!.queuedAt).toBe(new Date(1700000000000).toISOString());
  });

  it('reports what a delete did', () => {
    expect(formatDeleteResult({ matched: [], removed: [], refused: [], vanished: [] }, 'abc')).toBe('no queued message matches abc');
    expect(formatDeleteResult({ matched: ['a', 'b', 'c'], removed: ['a'], refused: [{ file: 'b', reason: 'due now' }], vanished: ['c'] }, 'x')).toBe(
      'deleted a\ngone already (delivered or bounced meanwhile): c\nnot deleted b: due now',
    );
  });

  it('formats durations', () => {
    expect([0, 45_000, 12 * 60_000, 3 * 3600_000 + 5 * 60_000, 2 * 86400_000 + 4 * 3600_000].map(formatDuration)).toEqual(['0s', '45s', '12m', '3h05m', '2d04h']);
  });
});
