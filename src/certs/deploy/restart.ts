// Restarting haraka-out after its TLS settings changed. haraka-out has no TLS listener: it uses the key
// and certificate only as its client certificate, presented when a receiving MX asks for one during
// STARTTLS, and Haraka reads them once, when its outbound queue loads. So it must restart to present a
// new one. Under systemd that is `systemctl try-restart` (a graceful stop: SIGINT, Haraka finishes its
// deliveries; the queue is on disk; nothing happens when the unit is not running). Without systemd (a
// container, the tests) there is nothing to restart and the deploy says so.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { UNIT_NAMES } from '../../render/systemd';

/** Restarts haraka-out; resolves with a line for the output, rejects with the reason it failed. */
export type Restarter = () => Promise<string>;

/** `systemctl` found on env.PATH; sd_booted(3): systemd runs when /run/systemd/system exists. */
export function systemdRestarter(env: NodeJS.ProcessEnv, systemdDir = '/run/systemd/system'): Restarter {
  const unit = UNIT_NAMES['haraka-out'];
  return () =>
    new Promise((resolve, reject) => {
      if (!existsSync(systemdDir)) {
        resolve(`systemd is not running here: not restarting ${unit} (restart haraka-out yourself so that it presents the new certificate)`);
        return;
      }
      execFile('systemctl', ['try-restart', unit], { env: { ...env, LC_ALL: 'C' }, timeout: 120_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
        if (!err) {
          return resolve(
            `restarted ${unit} (systemctl try-restart; nothing to do when it is not running): it presents the certificate to MX servers that ask for a client certificate, and reads it only at start`,
          );
        }
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return resolve(`systemctl not found on PATH: not restarting ${unit}; restart haraka-out yourself`);
        if (/not (found|loaded)/i.test(stderr)) return resolve(`${unit} is not installed: nothing to restart`);
        reject(new Error(`systemctl try-restart ${unit} failed: ${stderr.trim() || err.message}; see journalctl -u ${unit}`));
      });
    });
}
