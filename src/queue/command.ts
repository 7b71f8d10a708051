// `mailproxy queue list|count|flush|delete`: the CLI edge of the queue tools. haraka-out's queue by default;
// `--instance in` (and `held`, `release`) is the mail haraka-in keeps while the backend is away (kept.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { queueDirFor } from '../config/paths';
import { isId } from '../plugins/store-forward/spool-meta';
import { formatDeleteResult, formatQueueCount, formatQueueListing, queueJson } from './format';
import { runKeptAction } from './kept';
import { countQueue, deleteMessage, findHarakaPid, flushQueue, listQueue } from './tools';

/** `--instance in|out` (haraka-out by default; held and release exist only for haraka-in). */
function instanceOf(option: string | undefined, action: string | undefined): 'haraka-in' | 'haraka-out' {
  const onlyIn = action === 'held' || action === 'release';
  if (option === undefined) return onlyIn ? 'haraka-in' : 'haraka-out';
  const instance = ({ in: 'haraka-in', 'haraka-in': 'haraka-in', out: 'haraka-out', 'haraka-out': 'haraka-out' } as const)[option];
  if (!instance) throw new UsageError(`--instance ${option}: expected in (haraka-in's kept mail) or out (haraka-out's queue, the default)`);
  if (onlyIn && instance === 'haraka-out') throw new UsageError(`queue ${action} is for the mail haraka-in keeps (--instance in); haraka-out holds nothing`);
  return instance;
}

async function runQueueCommand(argv: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      instances: { type: 'string' },
      json: { type: 'boolean', default: false },
      log: { type: 'string' },
      force: { type: 'boolean', default: false },
      instance: { type: 'string' },
    },
  });
  const [action, target] = positionals;
  const instance = instanceOf(values.instance, action);
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  if (instance === 'haraka-in') {
    const error = (text: string) => io.stderr.write(text);
    return runKeptAction(action, target, loaded.config, { print: (text) => io.stdout.write(`${text}\n`), error, json: values.json });
  }
  const queueDir = queueDirFor(loaded.config, 'haraka-out');
  // One place decides where the instances are: --instances, else the config's system.instances_dir.
  const instanceDir = path.resolve(values.instances ?? loaded.config.system.instances_dir, 'haraka-out');
  const print = (text: string) => io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  switch (action) {
    case 'list': {
      const log = values.log ? readFileSync(values.log === '-' ? 0 : values.log, 'utf8') : undefined;
      const listing = await listQueue(queueDir, log === undefined ? {} : { log });
      print(values.json ? queueJson(listing) : formatQueueListing(listing));
      return 0;
    }
    case 'count': {
      const count = await countQueue(queueDir);
      print(values.json ? queueJson(count) : formatQueueCount(count));
      return 0;
    }
    case 'flush': {
      const pid = await findHarakaPid(instanceDir);
      if (pid === null) {
        io.stderr.write(`mailproxy: no running haraka-out found for ${instanceDir} (is it running? is --instances right?)\n`);
        return 1;
      }
      await flushQueue(pid);
      // mailproxy-outbound puts a flushed message that fails again back on its old schedule, uncounted.
      print(`asked haraka-out (pid ${pid}) to retry every deferred message now; a retry that fails does not count as an attempt and keeps its place in the retry schedule`);
      return 0;
    }
    case 'delete': {
      if (!target) throw new UsageError('usage: mailproxy queue delete ID --config FILE');
      // With haraka-out stopped nothing can race the delete, so no --force is needed.
      const running = (await findHarakaPid(instanceDir)) !== null;
      const result = await deleteMessage(queueDir, target, { force: values.force || !running });
      print(values.json ? queueJson(result) : formatDeleteResult(result, target));
      if (result.matched.length === 0 && isId(target)) io.stderr.write(`${target} is an id of mail haraka-in keeps: add --instance in\n`);
      return result.removed.length > 0 ? 0 : 1;
    }
    default:
      throw new UsageError('usage: mailproxy queue list|count|flush|delete [--instance out] | list|count|held|release|delete --instance in');
  }
}

export const command: Command = {
  name: 'queue',
  usage: [
    {
      synopsis: 'queue list|count --config FILE [--json] [--log FILE]',
      about: ["haraka-out's queue: domain, age, attempts, last error (from --log,", 'e.g. `journalctl -u mailproxy-haraka-out -o cat > FILE`)'],
    },
    { synopsis: 'queue flush --config FILE [--instances DIR]', about: ['retry every deferred message now (SIGHUP to the running haraka-out)'] },
    { synopsis: 'queue delete ID --config FILE [--instances DIR] [--force]', about: ['remove one message (file name, id or the uuid from its 250 reply)'] },
    {
      synopsis: 'queue list|count|held --instance in --config FILE [--json]',
      about: ['mail haraka-in keeps while the backend is away (inbound.store_and_forward):', 'ready (waiting for the backend) and held (waiting for you)'],
    },
    {
      synopsis: 'queue release|delete ID --instance in --config FILE',
      about: ['put a held message back for delivery at the next probe, or delete it'],
    },
  ],
  exitStyle: 'plain',
  run: runQueueCommand,
};
