// `mailproxy config docs|get|set`: the config reference, one key's value (defaults included), and a change
// of one key in the file that keeps its comments (the installer sets system.node this way).
import { stat } from 'node:fs/promises';
import type { CliIo } from '../cli';
import { loadConfigFile, readConfigFile, resolveConfigPath, UsageError } from '../cli-support';
import { configDocs } from '../config/docs';
import { configValue, formatValue, parseKeyPath, setConfigValue } from '../config/edit';
import { writeFileAtomic } from '../render/write';

export const CONFIG_USAGE = 'usage: mailproxy config docs | config get KEY... [--config FILE] | config set KEY VALUE [--config FILE]';

function takeConfigOption(args: string[]): { rest: string[]; config: string | undefined } {
  const at = args.indexOf('--config');
  if (at === -1) return { rest: args, config: undefined };
  const file = args[at + 1];
  if (file === undefined) throw new UsageError('--config needs a file');
  return { rest: [...args.slice(0, at), ...args.slice(at + 2)], config: file };
}

function keyPath(key: string | undefined): string[] {
  if (key === undefined) throw new UsageError(CONFIG_USAGE);
  const path = parseKeyPath(key);
  if (!path) throw new UsageError(`${key} is not a config key (dotted names, e.g. system.node)`);
  return path;
}

export async function runConfigCommand(args: string[], io: CliIo): Promise<number> {
  const [verb, ...more] = args;
  const { rest, config } = takeConfigOption(more);
  // Any option but --config is unknown (set's VALUE is never one).
  const unknown = rest.find((arg, index) => arg.startsWith('--') && !(verb === 'set' && index === 1));
  if (unknown !== undefined) throw new UsageError(`Unknown option '${unknown}'`);
  if (verb === 'docs' && more.length === 0) {
    io.stdout.write(configDocs());
    return 0;
  }
  if (verb === 'get' && rest.length >= 1) {
    const paths = rest.map(keyPath);
    const loaded = loadConfigFile(config, io.stderr);
    if (!loaded) return 1;
    const values = paths.map((path) => configValue(loaded.config, path));
    const missing = rest.filter((_, index) => values[index] === undefined);
    if (missing.length > 0) {
      io.stderr.write(`mailproxy config: no key ${missing.join(', ')} (docs/CONFIG.md lists every key)\n`);
      return 1;
    }
    io.stdout.write(values.map((value) => `${formatValue(value)}\n`).join(''));
    return 0;
  }
  if (verb === 'set' && rest.length === 2) {
    const path = keyPath(rest[0]);
    const { text, source } = readConfigFile(config);
    const edited = setConfigValue(text, path, rest[1] as string, source);
    if (!edited.ok) {
      io.stderr.write(`mailproxy config: not changed, the result would be invalid:\n${edited.errors.join('\n')}\n`);
      return 1;
    }
    const file = resolveConfigPath(config).file;
    if (edited.text !== text) await writeFileAtomic(file, edited.text, (await stat(file)).mode & 0o7777);
    io.stdout.write(`${source}: ${rest[0]} = ${rest[1]}${edited.text === text ? ' (unchanged)' : ''}\n`);
    return 0;
  }
  throw new UsageError(CONFIG_USAGE);
}
