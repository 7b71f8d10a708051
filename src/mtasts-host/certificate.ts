// The key and certificate the policy service presents: the pair haraka-in serves (the last `cert deploy`'s,
// named by its record under state_dir/tls, else tls.key and tls.cert), and noticing a new one. A deploy
// writes the versioned files complete before it rewrites the record, so reading the record and then the
// files it names never mixes two deploys.
import { X509Certificate } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { effectiveTls, recordPath } from '../haraka/deploy-record';
import type { Config } from '../config/schema';
import type { CertificatePair } from './server';

export interface LoadedCertificate extends CertificatePair {
  /** The certificate file, and where its name came from. */
  file: string;
  from: string;
  /** SHA-256 of the leaf, for the log. */
  fingerprint: string;
}

/** Stat polls of the watched files: a new certificate is presented within about this long. */
export const WATCH_INTERVAL_MS = 1_000;
/** Waited after a change before reading, so that a key and certificate written one after the other are read together. */
const SETTLE_MS = 200;

/** The pair to present now; throws a one-line reason when it cannot be read. */
export function readCertificate(config: Config): LoadedCertificate {
  const tls = effectiveTls(config);
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(
        `cannot read the ${what} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist (deploy one with `mailproxy cert deploy`)' : (err as Error).message}`,
      );
    }
  };
  const cert = read(tls.cert, 'certificate');
  const key = read(tls.key, 'key');
  let fingerprint: string;
  try {
    fingerprint = new X509Certificate(cert).fingerprint256;
  } catch (err) {
    throw new Error(`${tls.cert} holds no certificate that parses: ${(err as Error).message}`);
  }
  return { key, cert, file: tls.cert, from: tls.from, fingerprint };
}

/**
 * Calls `onChange` after the deploy record, tls.key or tls.cert changed (stat polling: works for files that
 * do not exist yet, and for files replaced by rename). Returns the function that stops watching.
 */
export function watchCertificate(config: Config, onChange: () => void, intervalMs = WATCH_INTERVAL_MS): () => void {
  const files = [...new Set([recordPath(config), config.tls.key, config.tls.cert])];
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, SETTLE_MS);
  };
  for (const file of files) watchFile(file, { interval: intervalMs, persistent: true }, changed);
  return () => {
    clearTimeout(timer);
    for (const file of files) unwatchFile(file, changed);
  };
}
