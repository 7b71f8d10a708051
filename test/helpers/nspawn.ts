// A real systemd in a container, for tests of the units: this machine's own root, bind-mounted (not
// recursively) onto a temp dir and booted by systemd-nspawn with --volatile=overlay, so every write lands
// in a tmpfs and nothing needs downloading. The container has its own network namespace (only loopback
// until the test adds addresses), so port 25 and production-like 10.0.0.x addresses exist only inside it.
// The test talks to it with nsenter (machinectl and systemd-run -M would need a systemd on the host).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, type Dirent, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where the host's Node binary appears inside the container: outside /root and /home (ProtectHome=). */
export const CONTAINER_NODE = '/opt/node22/bin/node';
const PATH_INSIDE = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const BOOT_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Container {
  name: string;
  /** The host PID of the container's systemd (PID 1 inside). */
  leader: number;
  /** Runs argv inside the container as root with a clean environment (plus `env`), cwd /. */
  run(argv: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult>;
  /** run(), throwing with the output unless the exit code is 0. */
  ok(argv: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<string>;
  /** `systemctl show` of one unit: the named properties. */
  show(unit: string, properties: string[]): Promise<Record<string, string>>;
  /** Reads and writes files in the container's file system from the host (/proc/<leader>/root). */
  readFile(file: string): string | null;
  writeFile(file: string, text: string, mode?: number): void;
  exists(file: string): boolean;
  /** The names in a directory of the container ([] when it does not exist). */
  list(dir: string): string[];
  /** From this time on (Date.now() ms), every command gets at most 1 s: a test's time budget. */
  setDeadline(at: number): void;
  /** The container's console so far (systemd's boot messages), for failure reports. */
  console(): string;
  stop(): Promise<void>;
}

/** Why no container can boot here, or null. Synchronous: suites decide at collection time. */
export function nspawnUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'booting a container needs root';
  for (const file of ['/usr/bin/systemd-nspawn', '/usr/bin/nsenter', '/usr/bin/unshare', '/usr/bin/setpriv', '/lib/systemd/systemd']) {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      return `${file} is missing (sudo bash scripts/install-test-peers.sh installs systemd-container)`;
    }
  }
  if (!readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n')) return 'the kernel has no overlay file system (--volatile=overlay)';
  if (Number(process.versions.node.split('.')[0]) < 22) return `the test runs on Node ${process.version}; the units need 22 (source scripts/node-runtime.sh)`;
  return null;
}

function execute(argv: string[], timeoutMs: number): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : err.killed ? 124 : 1) : 0;
      resolve({ code, stdout, stderr: err?.killed ? `${stderr}\n(killed after ${timeoutMs} ms)` : stderr, ms: Date.now() - started });
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The container's init: the one child of systemd-nspawn (after --volatile set-up, nspawn forks it). */
function childOf(pid: number): number | null {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    for (const child of children) {
      if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd') return child;
    }
  } catch {
    // nspawn exited or has no child yet
  }
  return null;
}

export interface BootOptions {
  name: string;
  /** Host directories the container must see read-only at the same path (the checkout). */
  bindReadOnly: string[];
  /** Host directories the container may write to through a throwaway overlay (npm's cache). */
  overlay: string[];
}

export async function bootContainer(options: BootOptions): Promise<Container> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-nspawn-'));
  const rootDir = path.join(base, 'root');
  mkdirSync(rootDir);
  const nspawnDir = '/run/systemd/nspawn';
  const madeNspawnDir = !existsSync(nspawnDir);
  const varTmpBefore = new Set(existsSync('/var/tmp') ? readdir('/var/tmp') : []);
  const cgroupsBefore = new Set(nspawnCgroups().filter((dir) => existsSync(dir)));
  const node = realpathSync(process.execPath);
  const args = [
    `-D ${rootDir}`,
    '--volatile=overlay',
    '--boot',
    '--register=no',
    '--keep-unit',
    '--private-network',
    `-M ${options.name}`,
    `--bind-ro=${node}:${CONTAINER_NODE}`,
    ...options.bindReadOnly.map((dir) => `--bind-ro=${dir}`),
    ...options.overlay.map((dir) => `--overlay=${dir}::${dir}`),
    'systemd.unit=basic.target',
  ];
  // The bind mount and nspawn's own /run/systemd/nspawn live in a private mount namespace: nothing is
  // mounted on the host, and everything goes when the last process in it exits.
  // setpriv --pdeathsig: should this test process die without afterAll (killed, crashed), nspawn gets
  // SIGTERM and powers the container off.
  const script = `mount --bind / ${rootDir} && mkdir -p ${nspawnDir} && mount -t tmpfs tmpfs ${nspawnDir} && exec setpriv --pdeathsig SIGTERM -- systemd-nspawn ${args.join(' ')}`;
  const nspawn: ChildProcess = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let consoleText = '';
  const keep = (chunk: Buffer) => {
    consoleText = (consoleText + chunk.toString('utf8')).slice(-64 * 1024);
  };
  nspawn.stdout?.on('data', keep);
  nspawn.stderr?.on('data', keep);
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    nspawn.once('exit', () => resolve());
    nspawn.once('error', (err) => {
      consoleText += `\ncannot run unshare: ${err.message}`;
      resolve();
    });
  });
  void exit.then(() => {
    exited = true;
  });
  const nspawnPid = nspawn.pid as number;
  let leader = 0;
  // A last resort if the test process dies without afterAll: the container must not outlive it.
  const onExit = () => {
    for (const pid of [leader, nspawnPid]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
  };
  process.on('exit', onExit);

  const stop = async () => {
    if (!exited) {
      // SIGTERM: nspawn asks the container's systemd to power off (units stop as on a real shutdown).
      nspawn.kill('SIGTERM');
      await Promise.race([exit, sleep(STOP_TIMEOUT_MS)]);
    }
    if (!exited) {
      // Killing the init of a PID namespace kills everything in it.
      if (leader > 0 && alive(leader)) process.kill(leader, 'SIGKILL');
      nspawn.kill('SIGKILL');
      await Promise.race([exit, sleep(5_000)]);
    }
    process.removeListener('exit', onExit);
    // nspawn removes the upper dirs of --overlay= on an orderly exit; after a SIGKILL they stay behind.
    for (const entry of readdir('/var/tmp')) {
      if (!varTmpBefore.has(entry) && entry.startsWith('nspawn-temp-')) await execute(['rm', '-rf', '--one-file-system', path.join('/var/tmp', entry)], 30_000);
    }
    // Without a systemd on the host, nspawn makes the cgroups payload/ (the container's) and supervisor/
    // (its own) under this process's cgroup, and leaves them behind empty.
    for (const dir of nspawnCgroups()) if (!cgroupsBefore.has(dir)) removeEmptyCgroup(dir);
    for (const dir of [rootDir, base, ...(madeNspawnDir ? [nspawnDir] : [])]) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty or gone: never remove more than the empty dirs made here
      }
    }
  };

  let deadline = Number.POSITIVE_INFINITY;
  const run = (argv: string[], runOptions: { env?: Record<string, string>; timeoutMs?: number } = {}) => {
    const env = Object.entries({ PATH: PATH_INSIDE, HOME: '/root', LANG: 'C.UTF-8', ...runOptions.env }).map(([key, value]) => `${key}=${value}`);
    const timeoutMs = Math.max(1_000, Math.min(runOptions.timeoutMs ?? 60_000, deadline - Date.now()));
    return execute(['nsenter', '-t', String(leader), '-a', '--', '/usr/bin/env', '-i', '-C', '/', ...env, ...argv], timeoutMs);
  };
  const hostPath = (file: string) => path.join(`/proc/${leader}/root`, file);
  const container: Container = {
    name: options.name,
    get leader() {
      return leader;
    },
    run,
    async ok(argv, runOptions) {
      const result = await run(argv, runOptions);
      if (result.code !== 0) throw new Error(`in the container: ${argv.join(' ')} exited ${result.code}\n${result.stdout}\n${result.stderr}`);
      return result.stdout;
    },
    async show(unit, properties) {
      const out = await container.ok(['systemctl', 'show', unit, ...properties.map((name) => `--property=${name}`)]);
      const values: Record<string, string> = {};
      for (const line of out.split('\n')) {
        const at = line.indexOf('=');
        if (at > 0) values[line.slice(0, at)] = line.slice(at + 1);
      }
      return values;
    },
    readFile(file) {
      try {
        return readFileSync(hostPath(file), 'utf8');
      } catch {
        return null;
      }
    },
    writeFile(file, text, mode = 0o644) {
      mkdirSync(path.dirname(hostPath(file)), { recursive: true });
      writeFileSync(hostPath(file), text, { mode });
    },
    exists(file) {
      return existsSync(hostPath(file));
    },
    list: (dir) => readdir(hostPath(dir)),
    setDeadline(at) {
      deadline = at;
    },
    console: () => consoleText,
    stop,
  };

  try {
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (!leader) {
      if (exited || Date.now() > deadline) throw new Error(`systemd-nspawn did not start a container:\n${consoleText}`);
      leader = childOf(nspawnPid) ?? 0;
      if (!leader) await sleep(50);
    }
    // `systemctl is-system-running --wait` fails when asked too early: poll instead.
    let state = '';
    while (state !== 'running' && state !== 'degraded') {
      if (exited || Date.now() > deadline) throw new Error(`the container's systemd did not finish booting (state ${state || 'unknown'}):\n${consoleText}`);
      state = (await run(['systemctl', 'is-system-running'], { timeoutMs: 5_000 })).stdout.trim();
      if (state !== 'running' && state !== 'degraded') await sleep(100);
    }
    return container;
  } catch (err) {
    await stop();
    throw err;
  }
}

function readdir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** The cgroup dirs systemd-nspawn creates under this process's cgroup, in every hierarchy it writes. */
function nspawnCgroups(): string[] {
  const dirs: string[] = [];
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, own] = line.split(':');
    if (own === undefined) continue;
    const mounts = controllers === '' ? ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'] : controllers === 'name=systemd' ? ['/sys/fs/cgroup/systemd'] : [];
    for (const mount of mounts) {
      if (!existsSync(path.join(mount, 'cgroup.procs'))) continue;
      for (const name of ['payload', 'supervisor']) dirs.push(path.join(mount, own, name));
      break;
    }
  }
  return dirs;
}

/** rmdir a cgroup and the cgroups below it, deepest first; a cgroup with processes in it stays. */
function removeEmptyCgroup(dir: string): void {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) if (entry.isDirectory()) removeEmptyCgroup(path.join(dir, entry.name));
  try {
    rmdirSync(dir);
  } catch {
    // busy (processes left) or gone
  }
}
