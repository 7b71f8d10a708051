// `mailproxy send`: one test message to an SMTP server given by address (never a name to look up), and
// what the server said. Exit 1 when a recipient was refused.
import { parseArgs } from 'node:util';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { sendMessage } from '../smtp/send';
import { parseServerOption } from '../smtp/server-arg';

async function runSendCommand(args: string[], io: CommandIo): Promise<number> {
  const print = (text: string) => io.stdout.write(`${text}\n`);
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
  const parsed = parseServerOption(values.server);
  if (!parsed.ok) throw new UsageError(parsed.error);
  const { server } = parsed;
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

export const command: Command = {
  name: 'send',
  usage: [
    {
      // The second line starts below the first one's options.
      synopsis: 'send   --server IP:PORT --from ADDR --to ADDR [--to ADDR] [--subject S] [--body TEXT]\n       [--local-address IP] [--helo NAME] [--starttls]',
      about: ['send one test message'],
    },
  ],
  exitStyle: 'plain',
  run: runSendCommand,
};
