// The `mailproxy` command. Thin: parses arguments and calls modules; returns an exit code (only the bin
// shim calls process.exit).
import path from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { checkConfig } from './check';
import { configDocs } from './config/docs';
import { loadConfigFile, readConfigFile, UsageError } from './cli-support';
import { parseHostPort } from './config/net';
import { runDemo } from './demo/run';
import { renderInstances } from './render/haraka';
import { writeRendered } from './render/write';
import { sendMessage } from './smtp/send';
import { runQueueCommand } from './queue/command';

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
}

const USAGE = `usage: mailproxy <command> [options]

commands:
  check  --config FILE               validate the config and have Haraka load both rendered instances
  render --config FILE [--out DIR]   write both Haraka instance dirs (default --out: instances)
  send   --server HOST:PORT --from ADDR --to ADDR [--to ADDR] [--subject S] [--body TEXT]
         [--local-address IP] [--helo NAME] [--starttls]
                                     send one test message
  queue list|count --config FILE [--json] [--log FILE]
                                     haraka-out's queue: domain, age, attempts, last error (from --log,
                                     e.g. \`journalctl -u mailproxy-haraka-out -o cat > FILE\`)
  queue flush --config FILE [--instances DIR]
                                     retry every deferred message now (SIGHUP to the running haraka-out)
  queue delete ID --config FILE [--instances DIR] [--force]
                                     remove one message (file name, id or the uuid from its 250 reply)
  demo                               run the whole appliance on loopback (what \`npm start\` does)
  config docs                        print the config reference (docs/CONFIG.md)
`;


async function run(command: string | undefined, args: string[], io: CliIo): Promise<number> {
  const print = (text: string) => io.stdout.write(`${text}\n`);
  switch (command) {
    case 'check': {
      const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
      const { text, source } = readConfigFile(values.config);
      const report = await checkConfig(text, source);
      (report.ok ? io.stdout : io.stderr).write(`${report.lines.join('\n')}\n`);
      return report.ok ? 0 : 1;
    }
    case 'render': {
      const { values } = parseArgs({ args, options: { config: { type: 'string' }, out: { type: 'string', default: 'instances' } } });
      const loaded = loadConfigFile(values.config, io.stderr);
      if (!loaded) return 1;
      const report = await writeRendered(values.out, renderInstances(loaded.config, { source: loaded.source }));
      for (const file of report.written) print(`wrote ${path.join(values.out, file)}`);
      for (const file of report.removed) print(`removed ${path.join(values.out, file)}`);
      print(`${report.written.length} written, ${report.removed.length} removed, ${report.unchanged.length} unchanged`);
      return 0;
    }
    case 'send': {
      const { values } = parseArgs({
        args,
        options: {
          server: { type: 'string' },
          from: { type: 'string' },
          to: { type: 'string', multiple: true },
          subject: { type: 'string', default: 'mailproxy test message' },
          body: { type: 'string', default: 'This is a test message sent by `mailproxy send`.' },
          'local-address': { type: 'string' },
          helo: { type: 'string' },
          starttls: { type: 'boolean', default: false },
        },
      });
      const server = parseHostPort(values.server ?? '');
      if (!server) throw new UsageError('--server HOST:PORT is required (an IP address and a port)');
      if (!values.from || !values.to?.length) throw new UsageError('--from and at least one --to are required');
      const result = await sendMessage({
        host: server.host,
        port: server.port,
        from: values.from,
        to: values.to,
        subject: values.subject,
        text: values.body,
        starttls: values.starttls,
        ...(values['local-address'] ? { localAddress: values['local-address'] } : {}),
        ...(values.helo ? { heloName: values.helo } : {}),
      });
      print(`accepted: ${result.accepted.join(', ') || '(none)'}`);
      if (result.rejected.length) print(`rejected: ${result.rejected.join(', ')}`);
      print(`server said: ${result.response}`);
      return result.rejected.length ? 1 : 0;
    }
    case 'queue':
      return runQueueCommand(args, io);
    case 'demo':
      return runDemo(io);
    case 'config': {
      if (args[0] !== 'docs') throw new UsageError('usage: mailproxy config docs');
      io.stdout.write(configDocs());
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(USAGE);
      return 0;
    default:
      throw new UsageError(`unknown command: ${command}`);
  }
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...args] = argv;
  try {
    return await run(command, args, io);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`mailproxy: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    io.stderr.write(`mailproxy: ${(err as Error).message}\n`);
    return 1;
  }
}
