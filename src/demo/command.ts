// `mailproxy demo`: the whole appliance on loopback (run.ts), what `npm start` runs.
import type { Command, CommandIo } from '../command/io';
import { parseCommandArgs } from '../command/usage';
import { runDemo } from './run';

async function runDemoCommand(args: string[], io: CommandIo): Promise<number> {
  parseCommandArgs({ args, options: {} }); // it takes no options: refuse one rather than ignore it
  return runDemo(io);
}

export const command: Command = {
  name: 'demo',
  usage: [{ synopsis: 'demo', about: ['run the whole appliance on loopback (what `npm start` does)'] }],
  exitStyle: 'plain',
  run: runDemoCommand,
};
