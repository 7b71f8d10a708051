// The state directories each instance writes to (queue, spool; haraka-in the pickup directory of haraka-out
// when store-and-forward is on). systemd's StateDirectory= makes them
// on a VPS; the demo and tests make them here.
import { mkdirSync } from 'node:fs';
import type { Config } from '../config/schema';
import { pickupDir, queueDirFor, spoolDirFor, type RoleName } from '../config/paths';

export function ensureStateDirs(config: Config, role: RoleName): void {
  for (const dir of [queueDirFor(config, role), spoolDirFor(config, role)]) mkdirSync(dir, { recursive: true });
  // haraka-in writes the backup MX's DSNs into haraka-out's pickup directory (it needs it whichever starts first).
  // `mailproxy tls-report send` drops the TLS reports there too.
  if (config.inbound.store_and_forward.enabled || config.outbound.tls_rpt.enabled) mkdirSync(pickupDir(config), { recursive: true, mode: 0o750 });
}
