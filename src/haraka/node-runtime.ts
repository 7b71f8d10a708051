// The Node.js the units run (system.node): present, runnable, and new enough for Haraka 3.3.4, whose own
// dependencies declare node >= 22. `check`, `health` and the installer ask the same question here.
import { execFile } from 'node:child_process';

export const MIN_NODE_MAJOR = 22;
// `node --version` answers in well under a second; a wedged binary must not hang `check` or `health`.
const VERSION_TIMEOUT_MS = 10_000;

export type NodeProbe = { ok: true; version: string } | { ok: false; error: string };

/** Runs `NODE --version`. */
export function probeNode(nodePath: string): Promise<NodeProbe> {
  return new Promise((resolve) => {
    execFile(nodePath, ['--version'], { timeout: VERSION_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      if (!err) return resolve({ ok: true, version: stdout.trim() });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return resolve({ ok: false, error: 'does not exist' });
      if (code === 'EACCES') return resolve({ ok: false, error: 'is not executable' });
      resolve({ ok: false, error: `did not run: ${err.message.split('\n')[0]}` });
    });
  });
}

/** Directories the units cannot see (ProtectHome=yes): a Node there runs for the installer, not for them. */
const HIDDEN_FROM_UNITS = ['/root/', '/home/', '/run/user/'];

/** Pure: why the units could not run a Node at this path, or null. `check` and the installer ask it. */
export function hiddenFromUnits(nodePath: string): string | null {
  const hidden = HIDDEN_FROM_UNITS.find((dir) => nodePath.startsWith(dir));
  if (!hidden) return null;
  return `system.node ${nodePath} is under ${hidden}, which the units hide (ProtectHome=yes): they would fail with status=203/EXEC; put Node.js outside it (e.g. /opt/node22/bin/node)`;
}

/** Pure: null when the probed Node can run Haraka, else what is wrong and what to do. */
export function nodeProblem(nodePath: string, probe: NodeProbe): string | null {
  const fix = `install Node.js ${MIN_NODE_MAJOR} LTS and set system.node to it (or run scripts/install.sh --node PATH)`;
  if (!probe.ok) return `system.node ${nodePath} ${probe.error}: the units cannot start Haraka; ${fix}`;
  const major = Number(/^v(\d+)\./.exec(probe.version)?.[1] ?? 0);
  if (major < MIN_NODE_MAJOR) {
    return `system.node ${nodePath} is ${probe.version}; Haraka 3.3.4 needs Node.js ${MIN_NODE_MAJOR} or newer: ${fix}`;
  }
  return null;
}
