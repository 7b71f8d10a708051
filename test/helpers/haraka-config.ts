// Haraka's own config loader (haraka-config, as Haraka 3.3.4 uses it) over rendered files: they are written
// into a fresh instance directory and read back the way a plugin in that instance reads them.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { HarakaConfig } from '../../src/plugins/haraka/plugin';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const harakaConfig = require('haraka-config') as { module_config(dir: string): HarakaConfig };

/** The config object a plugin gets in an instance at `instanceDir` whose config/ holds `files`. */
export function harakaConfigOf(instanceDir: string, files: Record<string, string>): HarakaConfig {
  const configDir = path.join(instanceDir, 'config');
  mkdirSync(configDir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(configDir, name), text);
  return harakaConfig.module_config(instanceDir);
}
