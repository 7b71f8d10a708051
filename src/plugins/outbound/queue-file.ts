// Whether a queued message's file is still there. Only ENOENT means it is gone (`mailproxy queue delete`
// unlinks it); any other error (EACCES, EIO, ...) says nothing about the message, which must stay queued.
import { statSync } from 'node:fs';

export type QueueFileState = { kind: 'present' } | { kind: 'deleted' } | { kind: 'unreadable'; error: string };

export function queueFileState(file: string, stat: (file: string) => unknown = statSync): QueueFileState {
  try {
    stat(file);
    return { kind: 'present' };
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    if (code === 'ENOENT') return { kind: 'deleted' };
    return { kind: 'unreadable', error: code ? `${code}: ${message}` : message };
  }
}
