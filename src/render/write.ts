// The effectful edge of rendering: writes only files whose text changed (so Haraka's file watches fire only
// for real changes), each atomically, and removes files an earlier render made that are no longer wanted.
//
// It runs as root into directories another user may be able to write to, so it never follows a symlink
// below the output directory: temp files are created with O_EXCL | O_NOFOLLOW, reads use O_NOFOLLOW, and
// every directory between the output directory and a file is checked with lstat before the file is
// written or removed. Node has no openat()/unlinkat(), so that check and the operation after it are two
// steps; swapping a directory for a symlink in between needs write access to the instance directory at
// that very moment, and the output directory itself is the operator's choice (it may be a symlink).
import { randomBytes } from 'node:crypto';
import { constants, promises as fs, type Stats } from 'node:fs';
import path from 'node:path';

export const MANIFEST = '.mailproxy-manifest';

const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY } = constants;

export interface WriteReport {
  written: string[];
  removed: string[];
  unchanged: string[];
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/** The bytes of a regular file; null when it is missing or not a regular file (a symlink is never followed). */
export async function readRegular(file: string): Promise<Buffer | null> {
  let handle: fs.FileHandle;
  try {
    // O_NONBLOCK: a FIFO planted at the name must not block the render.
    handle = await fs.open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ELOOP') return null;
    throw err;
  }
  try {
    return (await handle.stat()).isFile() ? await handle.readFile() : null;
  } finally {
    await handle.close();
  }
}

async function readIfRegular(file: string): Promise<string | null> {
  return (await readRegular(file))?.toString('utf8') ?? null;
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, O_RDONLY | O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A new temp file next to `file`: O_EXCL, so an existing name (a planted symlink included) is never opened. */
async function openTemp(file: string, mode: number): Promise<{ temp: string; handle: fs.FileHandle }> {
  for (let attempt = 0; ; attempt++) {
    const temp = `${file}.tmp-${randomBytes(8).toString('hex')}`;
    try {
      return { temp, handle: await fs.open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode) };
    } catch (err) {
      if (errorCode(err) !== 'EEXIST' || attempt >= 9) throw err;
    }
  }
}

/** Replaces `file` (in an existing directory) atomically and durably: temp file (created 0600), group,
 * exact mode, fsync, rename, fsync of the directory; the name never shows other bytes or another mode. */
export async function writeFileAtomic(file: string, bytes: string | Buffer, mode = 0o644, group: number | null = null): Promise<void> {
  const { temp, handle } = await openTemp(file, 0o600);
  try {
    try {
      await handle.writeFile(bytes);
      if (group !== null) await handle.chown(process.getuid?.() ?? 0, group);
      await handle.chmod(mode); // exact mode whatever the umask: Haraka may run as another user
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, file);
  } catch (err) {
    await fs.unlink(temp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

function assertInside(root: string, relative: string): string {
  const full = path.resolve(root, relative);
  if (!full.startsWith(path.resolve(root) + path.sep)) throw new Error(`refusing to write outside ${root}: ${relative}`);
  return full;
}

/**
 * Checks that every directory from `root` down to `relativeDir` is a real directory, not a symlink; with
 * `create`, makes the missing ones. Returns false when one is missing (and not created).
 */
async function realDirs(root: string, relativeDir: string, create: boolean, doing: string): Promise<boolean> {
  let dir = path.resolve(root);
  for (const part of relativeDir === '' || relativeDir === '.' ? [] : relativeDir.split(path.sep)) {
    dir = path.join(dir, part);
    let stat: Stats;
    try {
      stat = await fs.lstat(dir);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      if (!create) return false;
      await fs.mkdir(dir, 0o755);
      continue;
    }
    if (stat.isSymbolicLink()) throw new Error(`refusing to ${doing} through a symlink: ${path.relative(root, dir)}`);
    if (!stat.isDirectory()) throw new Error(`refusing to ${doing}: ${path.relative(root, dir)} is not a directory`);
  }
  return true;
}

/** Removes directories a removed file leaves empty, up to (not including) the output dir. */
async function removeEmptyParents(outDir: string, relative: string): Promise<void> {
  for (let dir = path.dirname(relative); dir !== '.' && dir !== '/'; dir = path.dirname(dir)) {
    try {
      if (!(await realDirs(outDir, dir, false, 'remove'))) return;
      await fs.rmdir(assertInside(outDir, dir));
    } catch {
      return; // not empty, already gone, or not ours to touch: stop climbing
    }
  }
}

export async function writeRendered(outDir: string, files: Map<string, string>): Promise<WriteReport> {
  const report: WriteReport = { written: [], removed: [], unchanged: [] };
  await fs.mkdir(outDir, { recursive: true });
  const manifestPath = path.join(outDir, MANIFEST);
  const previous = ((await readIfRegular(manifestPath)) ?? '').split('\n').filter((line) => line && !line.startsWith('#'));

  for (const [relative, text] of files) {
    const full = assertInside(outDir, relative);
    await realDirs(outDir, path.relative(outDir, path.dirname(full)), true, `write ${relative}`);
    if ((await readIfRegular(full)) === text) {
      report.unchanged.push(relative);
      continue;
    }
    await writeFileAtomic(full, text);
    report.written.push(relative);
  }

  for (const relative of previous) {
    if (files.has(relative)) continue;
    const full = assertInside(outDir, relative);
    if (!(await realDirs(outDir, path.relative(outDir, path.dirname(full)), false, `remove ${relative}`))) continue;
    try {
      // unlink never follows a symlink in the last component: a planted link is removed, not its target.
      await fs.unlink(full);
      report.removed.push(relative);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
    }
    await removeEmptyParents(outDir, relative);
  }

  const manifest = `# files generated by mailproxy render; removed again when no longer generated\n${[...files.keys()].sort().join('\n')}\n`;
  if ((await readIfRegular(manifestPath)) !== manifest) await writeFileAtomic(manifestPath, manifest);
  return report;
}
