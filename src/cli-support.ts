// What every `mailproxy` subcommand shares: the usage error, which config file to read, and reading it with
// its errors reported.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { formatConfigError, loadConfigText } from './config/load';
import type { Config } from './config/schema';

/** A mistake in the command line: main() prints it with the usage text and exits 2. */
export class UsageError extends Error {}

/**
 * The one line a command prints for a mistake in its command line: a UsageError's message, or Node's
 * parseArgs error in the same words for every command (`Unknown option '--bogus'`, without the advice
 * about positionals that parseArgs adds only for commands that take them). Null for any other error.
 */
export function usageErrorMessage(err: unknown): string | null {
  if (err instanceof UsageError) return err.message;
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS') || typeof message !== 'string') return null;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const option = /^Unknown option '([^']*)'/.exec(message)?.[1];
    if (option !== undefined) return `Unknown option '${option}'`;
  }
  return message.split('. To specify a positional argument')[0] ?? message;
}

/** parseArgs, with its errors turned into UsageErrors that say the same thing for every command. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    const message = usageErrorMessage(err);
    if (message !== null) throw new UsageError(message);
    throw err;
  }
}

/** Where the installer puts the config: commands on the VPS and in the units need no --config. */
export const DEFAULT_CONFIG_PATH = '/etc/mailproxy/mailproxy.yaml';

export type ConfigPathSource = '--config' | 'MAILPROXY_CONFIG' | 'default';

/** The one place that decides the config file: --config, then $MAILPROXY_CONFIG, then DEFAULT_CONFIG_PATH. */
export function resolveConfigPath(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { file: string; from: ConfigPathSource } {
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
  const origin =
    from === 'MAILPROXY_CONFIG'
      ? ' (named by $MAILPROXY_CONFIG)'
      : from === 'default'
        ? ' (the default: pass --config FILE or set $MAILPROXY_CONFIG)'
        : '';
  const problem =
    err.code === 'ENOENT'
      ? `config file ${file} does not exist`
      : `cannot read config file ${file}: ${WHY[err.code ?? ''] ?? err.message}`;
  return new Error(`${problem}${origin}`);
}

/** The config file's text; a file that cannot be read throws one line (main() prints it and exits 1). */
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
