// The README's shell blocks marked `<!-- runnable -->` run as they are, from the repository root, each
// command with exit 0: a newcomer tries them first.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/<!-- runnable -->\n```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);

describe('README runnable blocks', () => {
  it('has at least one', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  for (const [index, block] of blocks.entries()) {
    it(`block ${index + 1} runs, every command exit 0`, () => {
      const tmp = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-readme-'));
      try {
        const result = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', block], { cwd: root, encoding: 'utf8', env: { ...process.env, TMPDIR: tmp }, timeout: 120_000 });
        expect(result.status, `${block}\n${result.stdout}\n${result.stderr}`).toBe(0);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
});
