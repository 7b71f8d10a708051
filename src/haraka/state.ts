// The state directories each instance writes to (queue, spool). systemd's StateDirectory= makes them
// on a VPS; the demo and tests make them here.
import { mkdirSync } from 'node:fs';
import type { Config } from '../config/schema';
import { queueDirFor, spoolDirFor, type RoleName } from '../config/paths';

export function ensureStateDirs(config: Config, role: RoleName): void {
  for (const dir of [queueDirFor(config, role), spoolDirFor(config, role)]) mkdirSync(dir, { recursive: true });
}
