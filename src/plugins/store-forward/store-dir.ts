// Where haraka-in keeps mail while the backend is away: store_and_forward.dir (config/paths.ts storeDir,
// rendered into mailproxy-forward.ini) holds the spool and the recipient cache. The plugin opens them
// there; `mailproxy queue --instance in` and `mailproxy health` read them there.
import path from 'node:path';
import { storeDir } from '../../config/paths';
import type { Config } from '../../config/schema';

export interface StorePaths {
  /** The spool's root (spool-files.ts lays it out). */
  spool: string;
  /** The recipient verification cache (verify-cache-file.ts). */
  recipients: string;
}

export function storePaths(dir: string): StorePaths {
  return { spool: path.join(dir, 'spool'), recipients: path.join(dir, 'recipients.json') };
}

/** The store of the haraka-in a config describes. */
export function storePathsFor(config: Config): StorePaths {
  return storePaths(storeDir(config));
}
