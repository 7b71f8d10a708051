// A command's usage, written once in its command.ts: the entries `mailproxy --help` lists, how they are
// laid out, and the usage error a command throws for a mistake in its command line.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** One form of a command as `mailproxy --help` lists it. */
export interface UsageEntry {
  /**
   * The command line after `mailproxy`, starting with the command's name; a second line (after a \n) is
   * indented as printed, below the first one's options.
   */
  synopsis: string;
  /** What it does, one string per printed line. */
  about: string[];
}

/** The column where `mailproxy --help` starts what a command does. */
const ABOUT_COLUMN = 37;

/**
 * An entry's lines in `mailproxy --help`: the synopsis indented by two, what it does at ABOUT_COLUMN, on
 * the synopsis's last line when that leaves two spaces between them, else below it.
 */
export function entryLines(entry: UsageEntry): string[] {
  const lines = entry.synopsis.split('\n').map((line) => `  ${line}`);
  const about = [...entry.about];
  const last = lines.length - 1;
  const first = about[0];
  if (first !== undefined && (lines[last] as string).length + 2 <= ABOUT_COLUMN) {
    lines[last] = `${(lines[last] as string).padEnd(ABOUT_COLUMN)}${first}`;
    about.shift();
  }
  return [...lines, ...about.map((text) => `${' '.repeat(ABOUT_COLUMN)}${text}`)];
}

/** `mailproxy` and the entries' synopses in one line, the forms separated by ` | ` (for a usage error's message). */
export function synopsisLine(entries: UsageEntry[]): string {
  return `mailproxy ${entries.map((entry) => entry.synopsis).join(' | ')}`;
}

/** A mistake in the command line: src/cli.ts prints it with the command's usage and exits 2 (3 for Nagios-style). */
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
