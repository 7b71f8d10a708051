// mailproxy-smtp's patch of Haraka's message stream, on the real haraka-message-stream with real spool
// files: a message kept in memory is not unlinked on destroy(); a spooled one still has its file removed.
// The pin test of src/plugins/haraka/patches/unspooled-destroy.ts: it fails as soon as Haraka or its message
// stream changes; re-read node_modules/haraka-message-stream/index.js (destroy, spooling, total_buffered)
// before updating it.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { skipDestroyOfUnspooledStreams } from '../../src/plugins/haraka/patches/unspooled-destroy';
import { useTempDirs } from '../helpers/tmp';

// The class Haraka's transactions use.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const MessageStream = (require('haraka-email-message') as { stream: unknown }).stream as new (
  cfg: object,
  id: string,
  headers?: string[],
) => { add_line(line: string | Buffer): void; add_line_end(cb?: () => void): void; destroy(): void; spooling: boolean };

const SPOOL_AFTER = 1024;

async function filled(spoolDir: string, id: string, bytes: number) {
  const stream = new MessageStream({ main: { spool_dir: spoolDir, spool_after: SPOOL_AFTER } }, id);
  stream.add_line('Subject: test\r\n'); // 15 bytes
  stream.add_line('\r\n');
  let written = 17;
  for (; written + 78 <= bytes; written += 78) stream.add_line(`${'x'.repeat(76)}\r\n`);
  if (written < bytes) stream.add_line(`${'y'.repeat(bytes - written - 2)}\r\n`);
  await new Promise<void>((resolve) => stream.add_line_end(() => resolve()));
  return stream;
}

describe('skipDestroyOfUnspooledStreams', () => {
  const tempDir = useTempDirs('mailproxy-spool-');
  afterEach(() => vi.restoreAllMocks());

  it('is Haraka 3.3.4, whose transactions store messages in haraka-message-stream 2.0.8 (haraka-email-message 1.4.4)', () => {
    const version = (name: string, from: string) => (require(require.resolve(`${name}/package.json`, { paths: [from] })) as { version: string }).version;
    const harakaDir = path.dirname(require.resolve('haraka/package.json'));
    const emailMessageDir = path.dirname(require.resolve('haraka-email-message/package.json', { paths: [harakaDir] }));
    expect(version('haraka', process.cwd())).toBe('3.3.4');
    expect(version('haraka-email-message', harakaDir)).toBe('1.4.4');
    expect(version('haraka-message-stream', emailMessageDir)).toBe('2.0.8');
  });

  it('applies to Haraka’s own message stream', () => {
    expect(skipDestroyOfUnspooledStreams(SPOOL_AFTER)).toBe(true);
    expect(skipDestroyOfUnspooledStreams(0)).toBe(false);
    expect(skipDestroyOfUnspooledStreams(Infinity)).toBe(false);
  });

  it('does not unlink a file that a message kept in memory never had', async () => {
    skipDestroyOfUnspooledStreams(SPOOL_AFTER);
    const spoolDir = tempDir();
    const stream = await filled(spoolDir, 'small', 300);
    expect(stream.spooling).toBe(false);
    const unlink = vi.spyOn(fs, 'unlink');
    stream.destroy();
    expect(unlink).not.toHaveBeenCalled();
    expect(fs.readdirSync(spoolDir)).toEqual([]);
  });

  it('still removes the spool file of a message that went to disk', async () => {
    skipDestroyOfUnspooledStreams(SPOOL_AFTER);
    const spoolDir = tempDir();
    const stream = await filled(spoolDir, 'large', 8 * SPOOL_AFTER);
    expect(stream.spooling).toBe(true);
    expect(fs.readdirSync(spoolDir)).toEqual(['large.eml']);
    stream.destroy();
    await vi.waitFor(() => expect(fs.readdirSync(spoolDir)).toEqual([]));
    expect(path.join(spoolDir, 'large.eml')).not.toSatisfy(fs.existsSync);
  });
});
