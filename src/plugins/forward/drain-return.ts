// The end of a kept message the backend refused for good, or that expired: returned to its sender with a
// DSN (store-forward/dsn.ts) when SPF for the original client's address passed for the sender's domain,
// else held for the operator (`mailproxy queue held`). bounceOrHold (drain-plan.ts) decides; no DSN ever
// goes to a sender that may be forged (no backscatter), and an SPF lookup that fails holds.
//
// The DSN is dropped into haraka-out's pickup directory (../pickup-files.ts) and is durable there before
// the message leaves the spool: a crash in between may send it twice, never lose it. It names no Remote-MTA:
// the backend's address behind the tunnel is nobody's business outside (its reply is quoted as it came).
import { randomBytes } from 'node:crypto';
import dns from 'node:dns';
import type { Readable } from 'node:stream';
import { logDecision } from '../decision-log';
import { dropIntoPickup } from '../pickup-files';
import { bounceOrHold } from '../store-forward/drain-plan';
import { buildDsn, type DsnRecipient } from '../store-forward/dsn';
import { senderSpf } from '../store-forward/sender-spf';
import type { StoredMeta } from '../store-forward/spool-meta';
import type { BackupMx } from './backup';
import type { ForwardPlugin } from './settings';

export interface Failure {
  kind: 'refused' | 'expired';
  /** For the held message's meta (the operator reads it). */
  reason: string;
  /** The decision line's reason. */
  why: 'backend_refused' | 'max_age';
  /** The backend's reply code, when it refused. */
  code?: number;
  /** The recipients that failed, each with the reply it got. */
  recipients: DsnRecipient[];
}

/** The most of the stored message read for the DSN's copy of its header. */
const HEADER_READ_LIMIT = 64 * 1024;

/** Returns the message to its sender when SPF allows it, else holds it; `meta` is a ready message whose
 * recipients are exactly the failed ones. */
export async function returnOrHold(plugin: ForwardPlugin, backup: BackupMx, meta: StoredMeta, failure: Failure): Promise<void> {
  const spf = await senderSpf({ mailFrom: meta.envelope.mailFrom, ip: meta.client.address, helo: meta.client.helo, mta: plugin.settings.heloName }, (name, type) =>
    dns.promises.resolve(name, type),
  );
  const pickupDir = backup.settings.pickupDir;
  if (bounceOrHold(meta.envelope.mailFrom, spf.result) === 'bounce' && pickupDir) {
    try {
      return await bounce(plugin, backup, meta, failure, pickupDir, spf.result);
    } catch (err) {
      plugin.logerror(`store-and-forward: ${meta.id}: could not return it to its sender (${(err as Error).message}); holding it`);
    }
  }
  return hold(plugin, backup, meta, failure, spf.result);
}

async function bounce(plugin: ForwardPlugin, backup: BackupMx, meta: StoredMeta, failure: Failure, pickupDir: string, spf: string): Promise<void> {
  const sender = meta.envelope.mailFrom.trim().replace(/^<(.*)>$/, '$1');
  const { stream } = await backup.spool.stream(meta.id);
  const message = buildDsn({
    hostname: plugin.settings.heloName,
    sender,
    kind: failure.kind,
    maxAgeDays: backup.settings.maxAgeMs / 86_400_000,
    recipients: failure.recipients,
    arrivedAt: meta.receivedAt,
    now: Date.now(),
    token: `${meta.id}.${randomBytes(4).toString('hex')}`,
    original: await headOf(stream, HEADER_READ_LIMIT),
  });
  const dropped = await dropIntoPickup(pickupDir, { from: '', to: [sender] }, message);
  await backup.spool.remove(meta.id);
  logDecision(plugin, plugin, {
    action: 'bounce',
    ip: meta.client.address,
    check: 'store_and_forward',
    reason: failure.why,
    ...(failure.code === undefined ? {} : { code: failure.code }),
    extra: { id: meta.id, spf, dsn: dropped },
  });
}

/** Holds the message with the reason in its meta (for the operator); the decision line gets `why`, a word. */
async function hold(plugin: ForwardPlugin, backup: BackupMx, meta: StoredMeta, failure: Failure, spf: string): Promise<void> {
  await backup.spool.hold(meta.id, failure.reason);
  logDecision(plugin, plugin, {
    action: 'hold',
    ip: meta.client.address,
    check: 'store_and_forward',
    reason: failure.why,
    ...(failure.code === undefined ? {} : { code: failure.code }),
    extra: { id: meta.id, spf },
  });
}

/** The first `limit` bytes of a stream (or all of a shorter one); the stream is closed after. */
async function headOf(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= limit) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, limit);
}
