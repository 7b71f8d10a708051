// Which config file a command reads, and reading it with its errors reported: the one place for
// --config, $MAILPROXY_CONFIG and the installed default.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { formatConfigError, loadConfigText } from '../config/load';
import type { Config } from '../config/schema';

/** Where the installer puts the config: commands on the VPS and in the units need no --config. */
export const DEFAULT_CONFIG_PATH = '/etc/mailproxy/mailproxy.yaml';

export type ConfigPathSource = '--config' | 'MAILPROXY_CONFIG' | 'default';

/** The one place that decides the config file: --config, then $MAILPROXY_CONFIG, then DEFAULT_CONFIG_PATH. */
export function resolveConfigPath(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { file: string; from: ConfigPathSource } {
  if (file) return { file, from: '--config' };
  if (env.MAILPROXY_CONFIG) return { file: env.MAILPROXY_CONFIG, from: 'MAILPROXY_CONFIG' };
  return { file: DEFAULT_CONFIG_PATH, from: 'default' };
}

const WHY: Record<string, string> = {
  EACCES: 'permission denied (run it as root, or as a member of the config file’s group)',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  ELOOP: 'too many symbolic links',
};

/** One line saying why the config file cannot be read, and where its name came from when not from --config. */
function unreadable(file: string, from: ConfigPathSource, err: NodeJS.ErrnoException): Error {
  const origin = from === 'MAILPROXY_CONFIG' ? ' (named by $MAILPROXY_CONFIG)' : from === 'default' ? ' (the default: pass --config FILE or set $MAILPROXY_CONFIG)' : '';
  const problem = err.code === 'ENOENT' ? `config file ${file} does not exist` : `cannot read config file ${file}: ${WHY[err.code ?? ''] ?? err.message}`;
  return new Error(`${problem}${origin}`);
}

/** The config file's text; a file that cannot be read throws one line (src/cli.ts prints it and exits 1). */
export function readConfigFile(file: string | undefined): { text: string; source: string } {
  const resolved = resolveConfigPath(file);
  try {
    return { text: readFileSync(resolved.file, 'utf8'), source: path.basename(resolved.file) };
  } catch (err) {
    throw unreadable(resolved.file, resolved.from, err as NodeJS.ErrnoException);
  }
}

/** The validated config, or null after writing every error (with its line) to stderr. */
export function loadConfigFile(file: string | undefined, stderr: Writable): { config: Config; source: string } | null {
  const { text, source } = readConfigFile(file);
  const loaded = loadConfigText(text);
  if (loaded.ok) return { config: loaded.config, source };
  stderr.write(`${loaded.errors.map((error) => formatConfigError(source, error)).join('\n')}\n`);
  return null;
}
