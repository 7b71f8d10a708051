// The deploy record: which versioned key and certificate (`state_dir/tls/<stem>.key|.pem`) the instances
// use now, and which before. `cert deploy` writes it next to the files; `render` and `check` read it, so
// a later render writes the same tls.ini paths as the last deploy instead of tls.key/tls.cert. It sits
// here, below the renderer and the cert commands, because both read it.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { tlsDeployDir } from '../config/paths';
import type { Config } from '../config/schema';

export const RECORD_NAME = 'deployed.json';

/** Versioned files of one deploy: the leaf's SHA-256 (64 hex), then `-` and 12 hex of the chain served with it. */
export const VERSIONED_FILE = /^([0-9a-f]{64}(?:-[0-9a-f]{12})?)\.(key|pem)$/;

export interface DeployedPair {
  /** SHA-256 of the leaf, colon-separated hex. */
  fingerprint: string;
  stem: string;
  key: string;
  cert: string;
  /** ISO time of the deploy. */
  deployed: string;
}

export interface DeployRecord {
  version: 1;
  current: DeployedPair;
  /** The pair the instances used before `current`: kept on disk for a rollback. */
  previous: DeployedPair | null;
}

export function recordPath(config: Config, root = '/'): string {
  return path.join(root, tlsDeployDir(config), RECORD_NAME);
}

function isPair(value: unknown): value is DeployedPair {
  const pair = value as Record<string, unknown> | null;
  return (
    typeof pair === 'object' &&
    pair !== null &&
    ['fingerprint', 'stem', 'key', 'cert', 'deployed'].every((field) => typeof pair[field] === 'string') &&
    path.isAbsolute(pair.key as string) &&
    path.isAbsolute(pair.cert as string)
  );
}

/** The record parsed from its text; throws a one-line reason when it is not one. */
export function parseRecord(text: string, file: string): DeployRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not JSON: ${(err as Error).message}`);
  }
  const record = value as Partial<DeployRecord> | null;
  if (record?.version !== 1 || !isPair(record.current) || !(record.previous === null || isPair(record.previous))) {
    throw new Error(`${file} is not a deploy record of this version (delete it and deploy again)`);
  }
  return record as DeployRecord;
}

export function formatRecord(record: DeployRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** The record, or null when there is none yet. */
export function readRecord(config: Config, root = '/'): DeployRecord | null {
  const file = recordPath(config, root);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
  return parseRecord(text, file);
}

export interface EffectiveTls {
  key: string;
  cert: string;
  /** Where the pair comes from, for the operator. */
  from: 'cert deploy' | 'tls.key/tls.cert';
  /** Why the deploy record was not used (missing files, unreadable record); null when it was, or there is none. */
  ignored: string | null;
}

/**
 * The key and certificate the instances should use: the last deploy's when its record and both files
 * exist (under `root`), else the config's tls.key and tls.cert.
 */
export function effectiveTls(config: Config, root = '/'): EffectiveTls {
  const fallback = { key: config.tls.key, cert: config.tls.cert, from: 'tls.key/tls.cert' as const };
  let record: DeployRecord | null;
  try {
    record = readRecord(config, root);
  } catch (err) {
    return { ...fallback, ignored: (err as Error).message };
  }
  if (!record) return { ...fallback, ignored: null };
  const missing = [record.current.key, record.current.cert].filter((file) => !existsSync(path.join(root, file)));
  if (missing.length) {
    return { ...fallback, ignored: `${recordPath(config, root)} names ${missing.join(' and ')}, which ${missing.length === 1 ? 'does' : 'do'} not exist` };
  }
  return { key: record.current.key, cert: record.current.cert, from: 'cert deploy', ignored: null };
}
