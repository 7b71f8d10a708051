// `mailproxy config docs|get|set`: the config reference, one key's value (defaults included), and a change
// of one key in the file that keeps its comments (the installer sets system.node this way).
import { stat } from 'node:fs/promises';
import { loadConfigFile, readConfigFile, resolveConfigPath } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { synopsisLine, UsageError, type UsageEntry } from '../command/usage';
import { configDocs } from '../config/docs';
import { configValue, formatValue, parseKeyPath, setConfigValue } from '../config/edit';
import { writeFileAtomic } from '../render/write';

const USAGE: UsageEntry[] = [
  { synopsis: 'config docs', about: ['print the config reference (docs/CONFIG.md)'] },
  { synopsis: 'config get KEY... [--config FILE]', about: ["each key's value on a line, defaults included (e.g. system.node)"] },
  {
    synopsis: 'config set KEY VALUE [--config FILE]',
    about: ['change one key in the file, keeping its comments; refused when the', 'result would be invalid'],
  },
];

/** Every form in one line, the message of a usage error. */
const CONFIG_USAGE = `usage: ${synopsisLine(USAGE)}`;

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

async function runConfigCommand(args: string[], io: CommandIo): Promise<number> {
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
    if (edited.text !== text) {
      // The new file keeps the old one's mode and group: the installer gives it to root:mailproxy, 0640.
      const { mode, gid } = await stat(file);
      await writeFileAtomic(file, edited.text, mode & 0o7777, gid === process.getgid?.() ? null : gid);
    }
    io.stdout.write(`${source}: ${rest[0]} = ${rest[1]}${edited.text === text ? ' (unchanged)' : ''}\n`);
    return 0;
  }
  throw new UsageError(CONFIG_USAGE);
}

export const command: Command = { name: 'config', usage: USAGE, exitStyle: 'plain', run: runConfigCommand };
