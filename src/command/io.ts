// What src/cli.ts and every command (src/<name>/command.ts) share: the streams a command is given and what
// a command declares. Commands import this module, never src/cli.ts, so that the table of commands in
// cli.ts is the only place that knows them all.
import type { Readable, Writable } from 'node:stream';
import type { UsageEntry } from './usage';

/** What a command writes to and runs with: the process's in the bin shim, captured streams in the tests. */
export interface CommandIo {
  stdout: Writable;
  stderr: Writable;
  /** The environment external tools run with (`health` finds systemctl and wg on its PATH); process.env when absent. */
  env?: NodeJS.ProcessEnv;
  /** Where `stats` reads the log without FILE; process.stdin when absent. */
  stdin?: Readable & { isTTY?: boolean };
  /** The clock `stats --since` counts back from; the system's when absent. */
  now?: () => Date;
}

/**
 * How a command's exit code reads. plain: 0 ok, 1 failed, 2 usage error. nagios (a monitoring plugin):
 * 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, and a usage error is UNKNOWN, so that a typo in a monitoring
 * setup is not reported as a broken mail server.
 */
export type ExitStyle = 'plain' | 'nagios';

/** The exit code of a usage error, by the command's exit style. */
export const USAGE_ERROR_EXIT: Record<ExitStyle, number> = { plain: 2, nagios: 3 };

/** One `mailproxy <name>`: declared once, in its src/<name>/command.ts; src/cli.ts lists them. */
export interface Command {
  /** The word after `mailproxy`. */
  name: string;
  /** Its lines in `mailproxy --help`, one entry per form; `mailproxy <name> --help` prints these. */
  usage: UsageEntry[];
  /**
   * What a usage error prints below `usage: mailproxy <synopsis>` (the options one by one), for the
   * Nagios-style commands; the others print their --help.
   */
  details?: string;
  exitStyle: ExitStyle;
  /** Runs it with the arguments after the name; returns the exit code. Throws a UsageError for a wrong command line. */
  run(args: string[], io: CommandIo): Promise<number>;
}
