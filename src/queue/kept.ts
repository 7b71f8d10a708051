// `mailproxy queue list|count|held|release|delete --instance in`: the mail haraka-in keeps while the backend
// is away (inbound.store_and_forward), seen and changed from this process while haraka-in runs, through
// spool-admin.ts (never by opening the spool, whose recovery would delete what haraka-in is writing).
import type { Config } from '../config/schema';
import { UsageError } from '../command/usage';
import { deleteHeldMessage, KeptError, keptFigures, listKept, releaseHeld } from '../plugins/store-forward/spool-admin';
import { storePathsFor } from '../plugins/store-forward/store-dir';
import { formatDeletedHeld, formatKeptCount, formatKeptListing, formatReleased, keptJson } from './kept-format';

export interface KeptOutput {
  print: (text: string) => void;
  error: (text: string) => void;
  json: boolean;
}

export async function runKeptAction(action: string | undefined, target: string | undefined, config: Config, out: KeptOutput): Promise<number> {
  const root = storePathsFor(config).spool;
  const needsId = (usage: string) => {
    if (!target) throw new UsageError(`usage: mailproxy queue ${usage} ID --config FILE (the ID from \`mailproxy queue held\`)`);
    return target;
  };
  try {
    switch (action) {
      case 'list':
      case 'held': {
        const listing = await listKept(root, action === 'held' ? ['held'] : ['ready', 'held']);
        out.print(out.json ? keptJson(listing) : formatKeptListing(listing, { heldOnly: action === 'held' }));
        return 0;
      }
      case 'count': {
        const figures = await keptFigures(root);
        out.print(out.json ? keptJson(figures) : formatKeptCount(figures, root));
        return 0;
      }
      case 'release': {
        const released = await releaseHeld(root, needsId('release'));
        out.print(out.json ? keptJson(released) : formatReleased(released, config.inbound.store_and_forward.probe_interval));
        if (!config.inbound.store_and_forward.enabled) {
          out.error('note: inbound.store_and_forward is off in this config, so haraka-in does not hand kept mail on until it is on again\n');
        }
        return 0;
      }
      case 'delete': {
        const deleted = await deleteHeldMessage(root, needsId('delete --instance in'));
        out.print(out.json ? keptJson(deleted) : formatDeletedHeld(deleted));
        return 0;
      }
      case 'flush':
        throw new UsageError('haraka-in hands kept mail on by itself at each probe once the backend answers; `mailproxy queue release ID` puts a held one back');
      default:
        throw new UsageError('usage: mailproxy queue list|count|held|release|delete --instance in');
    }
  } catch (err) {
    if (!(err instanceof KeptError)) throw err;
    out.error(`mailproxy queue: ${err.message}\n`);
    return 1;
  }
}
