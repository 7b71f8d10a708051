// The state directories each instance writes to (queue, spool). systemd's StateDirectory= makes them
// on a VPS; the demo and tests make them here.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema';
import { stateDirFor } from '../render/haraka';
import type { RoleName } from '../render/roles';

export function ensureStateDirs(config: Config, role: RoleName): void {
  for (const sub of ['queue', 'spool']) mkdirSync(path.join(stateDirFor(config, role), sub), { recursive: true });
}
