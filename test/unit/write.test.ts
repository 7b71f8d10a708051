// `mailproxy render` runs as root into instance directories another user may write to: it must never be
// steered by a symlink into writing or removing a file elsewhere, and a write must survive a crash.
import { existsSync, lstatSync, mkdirSync, promises, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { useTempDirs } from '../helpers/tmp';
import { writeRendered } from '../../src/render/write';

const tempDir = useTempDirs('mailproxy-write-');
afterEach(() => {
  vi.restoreAllMocks();
});

const files = new Map([
  ['haraka-out/config/me', 'mx.example.com\n'],
  ['haraka-out/config/smtp.ini', '[main]\nnodes=0\n'],
]);

/** An output dir and, next to it, a directory with a file the render must never touch. */
function rig(): { out: string; outside: string; victim: string } {
  const root = tempDir();
  const outside = path.join(root, 'outside');
  mkdirSync(outside);
  const victim = path.join(outside, 'victim');
  writeFileSync(victim, 'precious\n');
  return { out: path.join(root, 'instances'), outside, victim };
}

const realOpen = promises.open;
const realRename = promises.rename;

describe('render writes as root', () => {
  it('creates each temp file exclusively in the target directory, never opening a symlink planted at its name', async () => {
    const { out, victim } = rig();
    const temps: string[] = [];
    // Plant a symlink at the very name the writer picks for its first temp file, just before it opens it.
    vi.spyOn(promises, 'open').mockImplementation((async (file: string, flags?: string | number, mode?: number) => {
      if (String(file).includes('.tmp-')) {
        if (temps.length === 0) symlinkSync(victim, file);
        temps.push(String(file));
      }
      return realOpen(file, flags, mode);
    }) as typeof promises.open);

    await writeRendered(out, files);

    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    for (const [relative, text] of files) {
      const full = path.join(out, relative);
      expect(lstatSync(full).isFile(), relative).toBe(true);
      expect(readFileSync(full, 'utf8')).toBe(text);
    }
    const planted = temps[0] as string;
    expect(readlinkSync(planted)).toBe(victim); // left alone: neither written through nor renamed into place
    const targetDirs = new Set([out, path.join(out, 'haraka-out/config')]);
    for (const temp of temps) expect(targetDirs.has(path.dirname(temp)), temp).toBe(true);
  });

  it('refuses to write through a directory replaced by a symlink', async () => {
    const { out, outside } = rig();
    mkdirSync(path.join(out, 'haraka-out'), { recursive: true });
    symlinkSync(outside, path.join(out, 'haraka-out/config'));

    await expect(writeRendered(out, files)).rejects.toThrow(/refusing to write haraka-out\/config\/me through a symlink: haraka-out\/config$/);
    expect(readdirSync(outside)).toEqual(['victim']);
  });

  it('removes a file an earlier render made without following a symlinked directory', async () => {
    const { out, outside } = rig();
    await writeRendered(out, new Map([...files, ['haraka-out/config/sub/extra', 'x\n']]));
    // Someone swaps the directory for a link to a place holding a file of the same name.
    rmSync(path.join(out, 'haraka-out/config/sub'), { recursive: true });
    symlinkSync(outside, path.join(out, 'haraka-out/config/sub'));
    writeFileSync(path.join(outside, 'extra'), 'not yours\n');

    await expect(writeRendered(out, files)).rejects.toThrow(/refusing to remove haraka-out\/config\/sub\/extra through a symlink: haraka-out\/config\/sub$/);
    expect(readFileSync(path.join(outside, 'extra'), 'utf8')).toBe('not yours\n');
  });

  it('replaces or removes a symlink at a file name itself, never its target', async () => {
    const { out, victim } = rig();
    await writeRendered(out, new Map([...files, ['haraka-out/config/gone', 'x\n']]));
    rmSync(path.join(out, 'haraka-out/config/gone'));
    symlinkSync(victim, path.join(out, 'haraka-out/config/gone'));
    rmSync(path.join(out, 'haraka-out/config/me'));
    symlinkSync(victim, path.join(out, 'haraka-out/config/me'));

    const report = await writeRendered(out, files);

    expect(report.removed).toEqual(['haraka-out/config/gone']);
    expect(report.written).toEqual(['haraka-out/config/me']);
    expect(existsSync(path.join(out, 'haraka-out/config/gone'))).toBe(false);
    expect(lstatSync(path.join(out, 'haraka-out/config/me')).isFile()).toBe(true);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('fsyncs the directory after each rename, so a crash cannot lose a written file', async () => {
    const { out } = rig();
    const events: string[] = [];
    const name = (file: unknown) => path.relative(out, String(file)) || '.';
    vi.spyOn(promises, 'rename').mockImplementation((async (from: string, to: string) => {
      await realRename(from, to);
      events.push(`rename ${name(to)}`);
    }) as typeof promises.rename);
    vi.spyOn(promises, 'open').mockImplementation((async (file: string, flags?: string | number, mode?: number) => {
      const handle = await realOpen(file, flags, mode);
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        await sync();
        events.push(`sync ${name(file)}`);
      };
      return handle;
    }) as typeof promises.open);

    await writeRendered(out, files);

    const renames = events.filter((event) => event.startsWith('rename '));
    expect(renames.sort()).toEqual(['rename .mailproxy-manifest', 'rename haraka-out/config/me', 'rename haraka-out/config/smtp.ini']);
    for (const rename of renames) {
      const dir = path.dirname(rename.slice('rename '.length));
      expect(events.slice(events.indexOf(rename) + 1), rename).toContain(`sync ${dir}`);
    }
  });
});
