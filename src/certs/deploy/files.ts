// The file side of a deploy: the deploy directory (state_dir/tls), versioned key and certificate files
// written complete with their final owner and mode before anyone can name them, the lock that keeps two
// deploys apart, and pruning. Runs as root in a directory whose parent the service user owns, so it
// never follows a symlink there: the directory is lstat-checked, temp files are O_EXCL | O_NOFOLLOW.
import { constants, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { fsyncDir, readRegular, writeFileAtomic } from '../../render/write';

export { readRegular };
import { VERSIONED_FILE } from '../../haraka/deploy-record';

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = constants;

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

export interface Owner {
  uid: number;
  gid: number;
}

/** The uid and primary gid of a user from /etc/passwd; null when there is no such user (a dev machine, the tests). */
export function lookupUser(name: string, passwd = '/etc/passwd'): Owner | null {
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && uid !== undefined && gid !== undefined && /^\d+$/.test(uid) && /^\d+$/.test(gid)) return { uid: Number(uid), gid: Number(gid) };
  }
  return null;
}

/** How the files must end up so that Haraka (running as `user`) reads them and nobody else does. */
export interface FilePolicy {
  /** Owner group of the directory and files: the service user's group; null leaves them as created. */
  group: number | null;
  /** Explains the choice in one line of output. */
  note: string;
}

export function filePolicy(user: string, lookup: (name: string) => Owner | null = lookupUser): FilePolicy {
  const owner = lookup(user);
  if (!owner) return { group: null, note: `user ${user} does not exist here: files stay owned by uid ${process.getuid?.() ?? '?'}, key mode 0640` };
  return { group: owner.gid, note: `files owned by uid ${process.getuid?.() ?? '?'}, group of ${user} (gid ${owner.gid}); key mode 0640, certificate 0644` };
}

/** Makes `dir` (mode 0750, the policy's group) or checks the existing one is a real directory, not a symlink. */
export async function ensureDeployDir(dir: string, policy: FilePolicy): Promise<void> {
  try {
    const stat = await fs.lstat(dir);
    if (stat.isSymbolicLink()) throw new Error(`refusing to deploy through a symlink: ${dir}`);
    if (!stat.isDirectory()) throw new Error(`refusing to deploy: ${dir} is not a directory`);
    return;
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  await fs.mkdir(dir, { recursive: true, mode: 0o750 });
  if (policy.group !== null) await fs.chown(dir, process.getuid?.() ?? 0, policy.group);
  await fs.chmod(dir, 0o750);
  await fsyncDir(path.dirname(dir));
}

/**
 * Puts `bytes` at `dir/name` with its final group and mode already set when the name appears: a temp file
 * (created 0600, so never readable by others meanwhile), fchown, fchmod, fsync, rename, fsync of the
 * directory. Returns false when the file already holds exactly these bytes (then it is left untouched).
 */
export async function installFile(dir: string, name: string, bytes: string, mode: number, policy: FilePolicy): Promise<boolean> {
  const file = path.join(dir, name);
  const existing = await readRegular(file);
  if (existing?.equals(Buffer.from(bytes))) {
    const stat = await fs.lstat(file);
    if ((stat.mode & 0o777) === mode && (policy.group === null || stat.gid === policy.group)) return false;
  }
  await writeFileAtomic(file, bytes, mode, policy.group);
  return true;
}

export async function removeFile(file: string): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Removes versioned files whose stem is not in `keep`, and temp files a crashed deploy left behind.
 * Returns the removed names.
 */
export async function pruneVersions(dir: string, keep: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const name of (await fs.readdir(dir)).sort()) {
    const versioned = VERSIONED_FILE.exec(name);
    const leftover = /^\.[0-9a-f-]+\.(key|pem)\.tmp-[0-9a-f]{16}$/.test(name);
    if (!leftover && (!versioned || keep.has(versioned[1] as string))) continue;
    if (await removeFile(path.join(dir, name))) removed.push(name);
  }
  if (removed.length) await fsyncDir(dir);
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === 'EPERM';
  }
}

/**
 * One deploy at a time (a renewal timer and an operator may start one together): `dir/.deploy.lock`
 * holds the PID of the deploy running; a lock whose process is gone is taken over.
 */
export async function acquireLock(dir: string): Promise<() => Promise<void>> {
  const file = path.join(dir, '.deploy.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await fs.open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return async () => {
        await removeFile(file);
      };
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
    }
    const holder = Number((await readRegular(file))?.toString('utf8').trim());
    if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
      throw new Error(`another certificate deploy (pid ${holder}) is running: wait for it (${file})`);
    }
    await removeFile(file);
  }
  throw new Error(`cannot take the deploy lock ${file}`);
}
