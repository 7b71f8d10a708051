// The spool under real crashes: a child Node process stores messages and dies by SIGKILL; the test then
// opens the spool as a restarted haraka-in would. What store() acknowledged is there with its exact bytes;
// what it did not finish is gone without a trace.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../helpers/tmp';
import { spawnTs } from '../helpers/ts-child';
import { Spool } from '../../src/plugins/store-forward/spool';
import { childMessage } from '../fixtures/store-forward/child-message';

const tempDir = useTempDirs('mailproxy-spool-crash-');
const ROOT = path.resolve(__dirname, '../..');
const CHILD = path.join(ROOT, 'test/fixtures/store-forward/spool-child.ts');

interface Finished {
  signal: NodeJS.Signals | null;
  code: number | null;
  lines: string[];
  stderr: string;
}

/** Runs the child; `onLine` sees each stdout line as it comes (and may kill the child). */
function runChild(root: string, mode: string, onLine: (line: string, child: ChildProcess) => void = () => undefined): Promise<Finished> {
  const child = spawnTs(CHILD, [root, mode], ROOT);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    for (let end = partial.indexOf('\n'); end >= 0; end = partial.indexOf('\n')) {
      const line = partial.slice(0, end);
      partial = partial.slice(end + 1);
      lines.push(line);
      onLine(line, child);
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ signal, code, lines, stderr }));
  });
}

async function reopen(root: string, logs: string[] = []): Promise<Spool> {
  return Spool.open(root, { log: (message) => logs.push(message) });
}

const files = (root: string, area: string) => readdirSync(path.join(root, area)).sort();

describe('spool crash safety (SIGKILL)', () => {
  it('a message store() acknowledged is listed, with identical bytes, after a SIGKILL right after it', async () => {
    const root = path.join(tempDir(), 'spool');
    const run = await runChild(root, 'after-store');
    expect(run.signal, run.stderr).toBe('SIGKILL');
    expect(run.lines).toHaveLength(1);
    const id = run.lines[0]!;

    const spool = await reopen(root);
    expect(await spool.listReady()).toEqual([id]);
    const { meta, raw } = await spool.read(id);
    expect(raw.equals(childMessage(0))).toBe(true);
    expect(meta.envelope.rcptTo).toEqual(['user0@example.org']);
    expect(spool.recovery).toMatchObject({ tmpRemoved: 0, unacknowledged: 0, corrupt: 0 });
  });

  it('a message killed while its bytes were being written is not listed, and recovery leaves no garbage', async () => {
    const root = path.join(tempDir(), 'spool');
    const run = await runChild(root, 'mid-write');
    expect(run.signal, run.stderr).toBe('SIGKILL');
    expect(run.lines).toEqual(['writing']);
    expect(files(root, 'tmp')).toHaveLength(1); // the half-written message

    const logs: string[] = [];
    const spool = await reopen(root, logs);
    expect(await spool.listReady()).toEqual([]);
    for (const area of ['tmp', 'msg', 'ready', 'held', 'corrupt']) expect(files(root, area), area).toEqual([]);
    expect(spool.usage()).toEqual({ bytes: 0, ready: 0, held: 0 });
    expect(logs.join('\n')).toMatch(/removed 1 unfinished file\(s\) from tmp/);
  });

  it('killed at random moments while storing: every acknowledged message survives, nothing half-stored is visible', async () => {
    const root = path.join(tempDir(), 'spool');
    const acknowledged = new Map<string, number>();
    for (let round = 0; round < 4; round++) {
      const delay = 20 + Math.floor(Math.random() * 120);
      let timer: NodeJS.Timeout | undefined;
      const run = await runChild(root, 'loop', (line, child) => {
        if (line === 'open') timer = setTimeout(() => child.kill('SIGKILL'), delay);
        const [n, id] = line.split(' ');
        if (id) acknowledged.set(id, Number(n));
      });
      clearTimeout(timer);
      expect(run.signal, run.stderr).toBe('SIGKILL');

      const spool = await reopen(root);
      const listed = await spool.listReady();
      // At most one more than acknowledged: committed, but killed before store() returned to the child.
      expect(listed.length - acknowledged.size).toBeGreaterThanOrEqual(0);
      expect(listed.length - acknowledged.size).toBeLessThanOrEqual(1);
      for (const [id, n] of acknowledged) {
        expect(listed).toContain(id);
        expect((await spool.read(id)).raw.equals(childMessage(n))).toBe(true);
      }
      for (const id of listed) acknowledged.set(id, acknowledged.get(id) ?? Number((await spool.readMeta(id)).envelope.rcptTo[0]!.match(/\d+/)![0]));
      expect(files(root, 'tmp')).toEqual([]);
      expect(files(root, 'msg')).toEqual(listed.map((id) => `${id}.eml`));
      expect(files(root, 'corrupt')).toEqual([]);
    }
    expect(acknowledged.size).toBeGreaterThan(0);
  });
});
