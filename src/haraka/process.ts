// Starting and stopping real Haraka processes: used by the demo, `mailproxy check` and the tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { HARAKA_NODE_ARGS } from './node-args';

export function harakaBin(): string {
  return path.join(path.dirname(require.resolve('haraka/package.json')), 'bin', 'haraka');
}

export { HARAKA_NODE_ARGS };

export interface HarakaProcess {
  name: string;
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr interleaved). */
  output(): string;
  /** SIGINT (Haraka's graceful shutdown outside PID 1), then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  name: string;
  instanceDir: string;
  /** Where to echo output as it arrives (the demo); tests keep it in memory only. */
  echo?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  /** A command to run Haraka under, e.g. ['taskset', '-c', '0'] (it must exec, keeping the pid). */
  prefix?: string[];
}

export function startHaraka(options: StartOptions): HarakaProcess {
  // `-c DIR` must be the first two arguments.
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  // Test runners set NODE_ENV=test, which makes Haraka's outbound send an empty HELO name.
  for (const name of ['NODE_ENV', 'VITEST', 'VITEST_MODE', 'VITEST_POOL_ID', 'VITEST_WORKER_ID']) delete env[name];
  const [command, ...args] = [...(options.prefix ?? []), process.execPath, ...HARAKA_NODE_ARGS, harakaBin(), '-c', options.instanceDir];
  const child = spawn(command as string, args, {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffer = '';
  let pending = '';
  const onData = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    buffer += text;
    if (buffer.length > 4_000_000) buffer = buffer.slice(-2_000_000);
    if (options.echo) {
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) options.echo(line);
    }
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null)));
  });
  return {
    name: options.name,
    child,
    output: () => buffer,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Resolves once the SMTP server at host:port answers with a 220 banner; never a fixed sleep. */
export async function waitForBanner(host: string, port: number, options: { timeoutMs?: number; process?: HarakaProcess } = {}): Promise<string> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  let lastError = 'no attempt';
  while (Date.now() < deadline) {
    if (options.process && options.process.child.exitCode !== null) {
      throw new Error(`${options.process.name} exited with ${options.process.child.exitCode} before listening:\n${options.process.output().slice(-3000)}`);
    }
    try {
      return await readBanner(host, port, Math.max(200, deadline - Date.now()));
    } catch (err) {
      lastError = (err as Error).message;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`no SMTP banner from ${host}:${port}: ${lastError}${options.process ? `\n${options.process.output().slice(-3000)}` : ''}`);
}

function readBanner(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timed out waiting for banner'));
    }, timeoutMs);
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      const line = data.split('\r\n').find((candidate) => /^\d{3} /.test(candidate));
      if (line) {
        clearTimeout(timer);
        socket.end('QUIT\r\n');
        socket.destroy();
        if (line.startsWith('220 ')) resolve(line);
        else reject(new Error(`unexpected banner: ${line}`));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export interface PluginOrderResult {
  ok: boolean;
  output: string;
}

/** Asks Haraka itself to load an instance's plugins (`haraka -o -c DIR`), catching unresolvable plugins. */
export function checkPluginOrder(instanceDir: string): PluginOrderResult {
  const result = spawnSync(process.execPath, [harakaBin(), '-c', instanceDir, '-o'], { encoding: 'utf8', timeout: 60_000 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  return { ok: result.status === 0 && !/failed|Cannot find|Error/i.test(result.stderr ?? ''), output };
}
