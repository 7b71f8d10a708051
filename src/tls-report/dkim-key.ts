// The key that DKIM-signs emailed TLS reports, made on first use: RSA 2048 (what every receiver verifies;
// Ed25519 alone is not), PKCS#8 PEM, readable only by its owner. It is written and fsynced under a temporary
// name (O_EXCL|O_NOFOLLOW) and linked into place, so that two runs at once never leave half a key or replace
// one already published, and a crash never leaves an empty one. Run by root (the installer, `mailproxy
// tls-report key` by hand), the work is done as the owner of the nearest existing directory above the key
// (the service user's state directory): the files are that user's from the start, and root never writes,
// links or changes the owner of anything in a directory another user controls.
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { tlsRptDkimKeyFile } from '../config/paths';
import type { Config } from '../config/schema';
import { writeNew } from '../plugins/store-forward/spool-files';
import { fsyncDir } from '../render/write';
import { addressDomain, dkimZoneLine, type DkimKey } from '../tlsrpt/dkim';

export interface DkimKeyFile {
  privateKey: string;
  /** Made by this call. */
  created: boolean;
}

/** The key in `file`, null when there is none; a file that holds no private key is an error that says what to do. */
async function readKey(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    createPrivateKey(text);
  } catch {
    throw new Error(`${file} holds no private key: remove it, run \`mailproxy tls-report key\` and publish the new record it prints`);
  }
  return text;
}

/** The nearest directory at or above `dir` that exists. */
async function nearestExisting(dir: string): Promise<string> {
  for (let at = dir; ; at = path.dirname(at)) {
    try {
      if ((await fs.stat(at)).isDirectory()) return at;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || at === path.dirname(at)) throw err;
    }
  }
}

/** Runs `work` as the owner of `dir`'s nearest existing directory when this process is root (effective ids
 * only, given back after); as anyone else, as itself. */
async function asOwnerOf<T>(dir: string, work: () => Promise<T>): Promise<T> {
  if (process.geteuid?.() !== 0 || !process.seteuid || !process.setegid) return work();
  const owner = await fs.stat(await nearestExisting(dir));
  if (owner.uid === 0) return work();
  process.setegid(owner.gid);
  process.seteuid(owner.uid);
  try {
    return await work();
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
}

/** The key in `file`, made first when there is none. */
export async function ensureDkimKey(file: string): Promise<DkimKeyFile> {
  const dir = path.dirname(file);
  return asOwnerOf(dir, async () => {
    const existing = await readKey(file);
    if (existing !== null) return { privateKey: existing, created: false };
    await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    const { privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const temporary = `${file}.${randomUUID()}.tmp`;
    await writeNew(temporary, privateKey);
    try {
      await fs.link(temporary, file);
    } catch (err) {
      // Another run made it meanwhile: that one is the key.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return { privateKey: (await readKey(file)) as string, created: false };
    } finally {
      await fs.rm(temporary, { force: true });
    }
    await fsyncDir(dir);
    return { privateKey, created: true };
  });
}

/** The From address of emailed reports: outbound.tls_rpt.from, or postmaster@ the first domain. */
export function reportFrom(config: Config): string {
  return config.outbound.tls_rpt.from || `postmaster@${config.domains[0]}`;
}

/** The config's signing domain and selector with `privateKey`. */
function reportKey(config: Config, privateKey: string): DkimKey {
  return { domain: addressDomain(reportFrom(config)), selector: config.outbound.tls_rpt.dkim_selector, privateKey };
}

/** The signing key of the config's reports, made when there is none. */
export async function reportDkimKey(config: Config): Promise<DkimKey & { created: boolean }> {
  const { privateKey, created } = await ensureDkimKey(tlsRptDkimKeyFile(config));
  return { ...reportKey(config, privateKey), created };
}

/** The zone-file line of the reports' DKIM key; null when TLS reports are off or no key is made yet. */
export async function tlsReportDkimRecord(config: Config): Promise<string | null> {
  if (!config.outbound.tls_rpt.enabled) return null;
  const privateKey = await readKey(tlsRptDkimKeyFile(config)).catch(() => null);
  return privateKey ? dkimZoneLine(reportKey(config, privateKey)) : null;
}
