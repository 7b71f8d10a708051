// Persistence for the MTA-STS policy cache, so that a restart of haraka-out does not forget which domains
// enforce TLS (forgetting would let an attacker who blocks the policy fetch downgrade delivery).
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { StsPolicy } from './policy';

export interface CachedPolicy {
  /** The `id` of the TXT record the policy was fetched for. */
  id: string;
  /** Milliseconds since the epoch. The policy expires at fetchedAt + policy.maxAge seconds. */
  fetchedAt: number;
  policy: StsPolicy;
}

export interface PolicyStore {
  load(): Record<string, CachedPolicy>;
  save(all: Record<string, CachedPolicy>): void;
}

export function isCachedPolicy(value: unknown): value is CachedPolicy {
  const entry = value as Partial<CachedPolicy> | null;
  const policy = entry?.policy as Partial<StsPolicy> | undefined;
  return (
    typeof entry?.id === 'string' &&
    typeof entry.fetchedAt === 'number' &&
    Number.isFinite(entry.fetchedAt) &&
    policy?.version === 'STSv1' &&
    (policy.mode === 'enforce' || policy.mode === 'testing' || policy.mode === 'none') &&
    Array.isArray(policy.mx) &&
    policy.mx.every((mx) => typeof mx === 'string') &&
    typeof policy.maxAge === 'number' &&
    Number.isFinite(policy.maxAge)
  );
}

/**
 * A JSON file store. A missing or unreadable file loads as an empty cache; malformed entries are dropped.
 * Saving writes a temporary file, fsyncs it and renames it over the old one, so a crash leaves either the
 * old or the new cache, never a torn file.
 */
export function fileStore(file: string): PolicyStore {
  return {
    load() {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(file, 'utf8'));
      } catch {
        return {};
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
      return Object.fromEntries(Object.entries(parsed).filter(([, entry]) => isCachedPolicy(entry))) as Record<string, CachedPolicy>;
    },
    save(all) {
      const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
      try {
        const fd = openSync(temp, 'w', 0o644);
        try {
          writeSync(fd, `${JSON.stringify(all, null, 1)}\n`);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        renameSync(temp, file);
      } catch (err) {
        try {
          unlinkSync(temp);
        } catch {
          // the temporary file was never created or is already renamed
        }
        throw err;
      }
      syncDirectory(path.dirname(file));
    },
  };
}

// Makes the rename itself durable. Best effort: not every platform or file system allows fsync on a directory.
function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // ignore
  }
}
