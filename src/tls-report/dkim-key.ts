// The key that DKIM-signs emailed TLS reports, made on first use: RSA 2048 (what every receiver verifies;
// Ed25519 alone is not), PKCS#8 PEM, readable only by its owner. It is written under a temporary name and
// linked into place, so that two runs at once never leave half a key or replace one already published.
// Made by root (the installer, `mailproxy tls-report key` by hand), it and any directory made for it go to
// the owner of the directory above: the service user that signs with it.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { tlsRptDkimKeyFile } from '../config/paths';
import type { Config } from '../config/schema';
import { addressDomain, dkimRecordText, dkimZoneLine, type DkimKey } from '../tlsrpt/dkim';

export interface DkimKeyFile {
  privateKey: string;
  /** Made by this call. */
  created: boolean;
}

async function readKey(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Makes `dir` where missing; as root, what it made goes to the owner of the directory it was made in (the
 * service user's state directory), so that haraka-out can still write its counts there. */
async function makeDirectory(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true, mode: 0o750 });
  if (first === undefined || process.getuid?.() !== 0) return;
  const owner = await fs.stat(path.dirname(first));
  for (let made = dir; ; made = path.dirname(made)) {
    await fs.chown(made, owner.uid, owner.gid);
    if (made === first) break;
  }
}

/** The key in `file`, made first when there is none. */
export async function ensureDkimKey(file: string): Promise<DkimKeyFile> {
  const existing = await readKey(file);
  if (existing !== null) return { privateKey: existing, created: false };
  const dir = path.dirname(file);
  await makeDirectory(dir);
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const temporary = `${file}.${randomUUID()}.tmp`;
  await fs.writeFile(temporary, privateKey, { mode: 0o600, flag: 'wx' });
  try {
    const owner = await fs.stat(dir);
    if (process.getuid?.() === 0) await fs.chown(temporary, owner.uid, owner.gid);
    await fs.link(temporary, file);
  } catch (err) {
    // Another run made it meanwhile: that one is the key.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { privateKey: await fs.readFile(file, 'utf8'), created: false };
  } finally {
    await fs.rm(temporary, { force: true });
  }
  return { privateKey, created: true };
}

/** The From address of emailed reports: outbound.tls_rpt.from, or postmaster@ the first domain. */
export function reportFrom(config: Config): string {
  return config.outbound.tls_rpt.from || `postmaster@${config.domains[0]}`;
}

/** The signing key of the config's reports, made when there is none. */
export async function reportDkimKey(config: Config): Promise<DkimKey & { created: boolean }> {
  const { privateKey, created } = await ensureDkimKey(tlsRptDkimKeyFile(config));
  return { domain: addressDomain(reportFrom(config)), selector: config.outbound.tls_rpt.dkim_selector, privateKey, created };
}

/** The zone-file line of the reports' DKIM key; null when TLS reports are off or no key is made yet. */
export async function tlsReportDkimRecord(config: Config): Promise<string | null> {
  if (!config.outbound.tls_rpt.enabled) return null;
  const privateKey = await readKey(tlsRptDkimKeyFile(config)).catch(() => null);
  if (!privateKey) return null;
  return dkimZoneLine(config.outbound.tls_rpt.dkim_selector, addressDomain(reportFrom(config)), dkimRecordText(privateKey));
}
