// What every `mailproxy` subcommand shares: the usage error and reading a config file with its errors reported.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { formatConfigError, loadConfigText } from './config/load';
import type { Config } from './config/schema';

/** A mistake in the command line: main() prints it with the usage text and exits 2. */
export class UsageError extends Error {}

export function readConfigFile(file: string | undefined): { text: string; source: string } {
  if (!file) throw new UsageError('--config FILE is required');
  return { text: readFileSync(file, 'utf8'), source: path.basename(file) };
}

/** The validated config, or null after writing every error (with its line) to stderr. */
export function loadConfigFile(file: string | undefined, stderr: Writable): { config: Config; source: string } | null {
  const { text, source } = readConfigFile(file);
  const loaded = loadConfigText(text);
  if (loaded.ok) return { config: loaded.config, source };
  stderr.write(`${loaded.errors.map((error) => formatConfigError(source, error)).join('\n')}\n`);
  return null;
}
