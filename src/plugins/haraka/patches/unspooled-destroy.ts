// Haraka's message stream unlinks its spool file whenever a transaction ends, even when the message was
// small enough to stay in memory and no file was ever made: one failing unlink (and an ENOENT error
// object with its stack trace) per message, about 4 % of haraka-in's CPU at 50 connections
// (node --cpu-prof, docs/BENCHMARKS.md). A stream opens its file only once it holds spool_after bytes
// (or sets `spooling`, past them), so below that there is nothing to remove and destroy() has nothing
// else to do. `spoolAfter` must be the stream's own limit: both come from connection.ini, read once.
// Patches a Haraka internal, pinned to Haraka 3.3.4 (haraka-email-message 1.4.4, haraka-message-stream
// 2.0.8): test/unit/unspooled-destroy.test.ts fails when Haraka changes.
import path from 'node:path';
import type { MessageStream } from '../connection';

type MessageStreamLike = Pick<MessageStream, 'total_buffered' | 'spooling' | 'destroy'>;

const PATCHED = Symbol.for('mailproxy.unspooled-destroy');

/** The message stream class Haraka's transactions use: haraka-email-message's, resolved from Haraka's own
 * directory (a copy installed elsewhere would be a different module). */
function messageStreamPrototype(): (MessageStreamLike & { [PATCHED]?: boolean }) | null {
  try {
    const harakaDir = path.dirname(require.resolve('haraka/package.json'));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const emailMessage = require(require.resolve('haraka-email-message', { paths: [harakaDir] })) as { stream?: { prototype?: MessageStreamLike } };
    const streamClass = emailMessage.stream;
    return typeof streamClass?.prototype?.destroy === 'function' ? streamClass.prototype : null;
  } catch {
    return null;
  }
}

/** Skips destroy() for streams that never reached spoolAfter bytes. False when it cannot be applied. */
export function skipDestroyOfUnspooledStreams(spoolAfter: number): boolean {
  const proto = messageStreamPrototype();
  if (!proto || !Number.isFinite(spoolAfter) || spoolAfter <= 0) return false;
  if (proto[PATCHED]) return true;
  const destroy = proto.destroy;
  proto.destroy = function destroyIfSpooled(this: MessageStreamLike) {
    const inMemory = this.spooling === false && typeof this.total_buffered === 'number' && this.total_buffered < spoolAfter;
    if (!inMemory) return destroy.call(this);
    return undefined;
  };
  proto[PATCHED] = true;
  return true;
}
