// Haraka's log lines through mailproxy-smtp's `log` hook (src/plugins/smtp/log-batch.ts), in a real Node
// process with stdout a pipe, as under systemd: the lines of one turn of the event loop in one write, in
// order, and the ones still pending when the process exits written before it is gone.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The compiled module, as Haraka loads it (`npm test` builds first).
const MODULE = path.resolve(__dirname, '../../dist/src/plugins/smtp/log-batch.js');

function run(script: string): { stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  return { stdout: result.stdout, stderr: result.stderr };
}

describe('batched log lines', () => {
  it('writes the lines of one turn in one write, in order, and the next turn after', () => {
    const { stdout, stderr } = run(`
      const { writeLogLine, plainLogLines } = require(${JSON.stringify(MODULE)});
      let writes = 0;
      const write = process.stdout.write.bind(process.stdout);
      process.stdout.write = (chunk, ...rest) => { writes++; return write(chunk, ...rest); };
      if (!plainLogLines({})) throw new Error('stdout is a pipe: lines are plain');
      for (let i = 0; i < 100; i++) writeLogLine('first ' + i);
      setImmediate(() => setImmediate(() => {
        writeLogLine('second');
        setTimeout(() => process.stderr.write('writes=' + writes), 10);
      }));
    `);
    expect(stdout.split('\n')).toEqual([...Array.from({ length: 100 }, (_, i) => `first ${i}`), 'second', '']);
    expect(stderr).toBe('writes=2');
  });

  it('writes what is still pending when the process exits', () => {
    const { stdout } = run(`
      const { writeLogLine } = require(${JSON.stringify(MODULE)});
      writeLogLine('before exit');
      writeLogLine('last words');
      process.exit(0);
    `);
    expect(stdout).toBe('before exit\nlast words\n');
  });

  it('leaves coloured or time-stamped lines to Haraka', async () => {
    const { plainLogLines } = await import('../../src/plugins/smtp/log-batch');
    expect(plainLogLines({ timestamps: true })).toBe(false);
  });
});
