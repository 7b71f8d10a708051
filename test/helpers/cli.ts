import { PassThrough } from 'node:stream';
import { main } from '../../src/cli';

/** Runs `mailproxy ARGV` in-process; stdout and stderr captured apart and together. */
export async function runCli(argv: string[]): Promise<{ code: number; out: string; err: string; text: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  let text = '';
  stdout.on('data', (chunk) => ((out += chunk), (text += chunk)));
  stderr.on('data', (chunk) => ((err += chunk), (text += chunk)));
  const code = await main(argv, { stdout, stderr });
  return { code, out, err, text };
}
