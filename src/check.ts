// `mailproxy check`: validate the config, render it to a temp dir and ask Haraka itself to load each
// instance's plugin list, so a plugin that cannot be resolved is caught before deploy.
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatConfigError, loadConfigText } from './config/load';
import { checkPluginOrder, harakaBin } from './haraka/process';
import { renderInstances } from './render/haraka';
import { ROLES } from './render/roles';
import { writeRendered } from './render/write';

export interface CheckReport {
  ok: boolean;
  lines: string[];
}

export async function checkConfig(text: string, source: string): Promise<CheckReport> {
  const result = loadConfigText(text);
  if (!result.ok) return { ok: false, lines: result.errors.map((error) => formatConfigError(source, error)) };
  const lines = [`${source}: config is valid`, ...result.warnings.map((warning) => `warning: ${formatConfigError(source, warning)}`)];
  for (const [key, file] of [['tls.key', result.config.tls.key], ['tls.cert', result.config.tls.cert]] as const) {
    if (!existsSync(file)) lines.push(`warning: ${key}: ${file} does not exist yet; haraka-in offers no STARTTLS until it does`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-check-'));
  try {
    await writeRendered(dir, renderInstances(result.config, { source }));
    let ok = true;
    for (const role of ROLES) {
      const instanceDir = path.join(dir, role.name);
      // `haraka -o` reads the hook list from docs/Plugins.md under the instance dir.
      symlinkSync(path.join(path.dirname(harakaBin()), '..', 'docs'), path.join(instanceDir, 'docs'));
      const order = checkPluginOrder(instanceDir);
      if (order.ok) {
        lines.push(`${role.name}: Haraka loaded plugins ${role.plugins.join(', ')}`);
      } else {
        ok = false;
        lines.push(`${role.name}: Haraka could not load its plugins:`, ...order.output.trim().split('\n').slice(-8).map((line) => `  ${line}`));
      }
    }
    return { ok, lines };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
