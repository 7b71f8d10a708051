// The drain of the backup MX: while the backend is marked unreachable, or a kept message is due, a probe
// every probe_interval (connect, banner, QUIT); once the backend is reachable, due messages go to it oldest
// first, at most drain_sessions at a time (drain-delivery.ts: a session each, XCLIENT replaying the
// original client). Live mail never waits for it: drain sessions take no client's backend slot.
//
// After an attempt: every recipient and the message accepted → removed; a 4xx (a recipient or the
// message) → kept for the recipients still pending, tried again after drain-plan's backoff, held once past
// max_age_days; a 5xx → those recipients returned to the sender with a DSN when SPF for the original
// client passed for the sender's domain, else held for the operator (`mailproxy queue held`; drain-return.ts),
// while any 4xx recipients stay kept. Nothing expires while the backend cannot be reached: keeping
// mail until home is back is the point, and the disk budget bounds it.
//
// One drain per process, for the one spool of its directory: a reload of the settings restarts the timer,
// never opens the spool again. The operator releases and deletes held messages from another process
// (`mailproxy queue release|delete --instance in`), so the spool's counts (the max_disk_mb budget) are taken
// from the directories again at most once a minute; a released message goes at the next tick.
import { logDecision } from '../decision-log';
import { afterReply, DRAIN_DEFAULTS, nextAttemptAt, type DrainSettings } from '../store-forward/drain-plan';
import type { StoredMeta } from '../store-forward/spool-meta';
import { BackendError } from './backend-session';
import type { BackupMx } from './backup';
import { deliver, type Attempt } from './drain-delivery';
import { returnOrHold, type Failure } from './drain-return';
import { BackendUnreachable, connectBackend } from './open';
import type { ForwardPlugin, Settings } from './settings';

interface Drain {
  plugin: ForwardPlugin;
  backup: BackupMx;
  timer: NodeJS.Timeout;
  intervalMs: number;
  /** When the spool's counts were last taken from its directories (ms since the epoch). */
  countedAt: number;
  /** Ready id → not before this time (ms since the epoch; 0: now). Small: ids and numbers only. */
  schedule: Map<string, number>;
}

const RECOUNT_MS = 60_000;
let drain: Drain | null = null;

/** Starts (or, after a reload, retimes) the one probe-and-drain loop of this process. */
export function startDrain(plugin: ForwardPlugin, backup: BackupMx): void {
  const intervalMs = backup.settings.probeIntervalMs;
  if (drain && drain.backup === backup && drain.intervalMs === intervalMs) {
    drain.plugin = plugin;
    return;
  }
  const schedule = drain?.backup === backup ? drain.schedule : new Map<string, number>();
  stopDrain();
  const started: Drain = { plugin, backup, timer: setInterval(() => void tick(started), intervalMs), intervalMs, countedAt: Date.now(), schedule };
  started.timer.unref();
  drain = started;
  void tick(started);
}

/** Stops the loop (store-and-forward turned off); the spool stays as it is. */
export function stopDrain(): void {
  if (drain) clearInterval(drain.timer);
  drain = null;
}

/** The tick in progress, whichever loop started it: a loop restarted by a reload waits for the old one's
 * workers, so no message is handed on by two loops at once. */
let ticking = false;

async function tick(current: Drain): Promise<void> {
  if (ticking || drain !== current) return;
  ticking = true;
  const { plugin, backup } = current;
  try {
    // A recount that overlapped a change of this process is skipped and tried at the next tick.
    if (Date.now() - current.countedAt >= RECOUNT_MS && (await backup.spool.recount())) current.countedAt = Date.now();
    const due = await dueIds(current);
    if (due.length === 0 && backup.downSince === null) return;
    if (!(await reachable(plugin.settings))) {
      backup.downSince ??= Date.now();
      return;
    }
    if (backup.downSince !== null) plugin.lognotice(`store-and-forward: the backend can be reached again after ${Math.round((Date.now() - backup.downSince) / 1000)} s`);
    backup.downSince = null;
    await drainDue(current, due);
  } catch (err) {
    plugin.logerror(`store-and-forward: drain failed: ${(err as Error).message}`);
  } finally {
    ticking = false;
  }
}

/** Ready ids that are due, oldest first; the schedule learns new ids from their metas and forgets gone ones. */
async function dueIds(current: Drain): Promise<string[]> {
  const ready = await current.backup.spool.listReady();
  const present = new Set(ready);
  for (const id of current.schedule.keys()) if (!present.has(id)) current.schedule.delete(id);
  const now = Date.now();
  const due: string[] = [];
  for (const id of ready) {
    let notBefore = current.schedule.get(id);
    if (notBefore === undefined) {
      const meta = await current.backup.spool.readMeta(id).catch(() => null);
      if (!meta) continue;
      notBefore = meta.nextAttemptAt ?? 0;
      current.schedule.set(id, notBefore);
    }
    if (notBefore <= now) due.push(id);
  }
  return due;
}

/** Only a backend that cannot be reached at all is away: one that greets 4xx or 5xx has answered, and the
 * delivery attempts record its answer with backoff. */
async function reachable(settings: Settings): Promise<boolean> {
  try {
    const session = await connectBackend(settings);
    session.quit();
    return true;
  } catch (err) {
    return !(err instanceof BackendUnreachable);
  }
}

/** Due ids in drain_sessions workers; a message whose handling fails is logged and tried again after the
 * shortest backoff, and no worker outlives the tick (the next tick's listing cannot overlap this one's). */
async function drainDue(current: Drain, due: string[]): Promise<void> {
  const queue = [...due];
  const { plugin, backup } = current;
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined && backup.downSince === null && drain === current; id = queue.shift()) {
      try {
        await drainOne(current, id);
      } catch (err) {
        current.schedule.set(id, Date.now() + DRAIN_DEFAULTS.minBackoffMs);
        plugin.logerror(`store-and-forward: ${id}: ${(err as Error).message}; trying again later`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, backup.settings.drainSessions) }, worker));
}

function planSettings(backup: BackupMx): DrainSettings {
  return { ...DRAIN_DEFAULTS, maxAgeMs: backup.settings.maxAgeMs };
}

function replyText(reply: { code: number; lines: string[] } | null): string {
  return reply ? `${reply.code} ${reply.lines.join(' ')}` : '';
}

async function drainOne(current: Drain, id: string): Promise<void> {
  const { plugin, backup, schedule } = current;
  const meta = await backup.spool.readMeta(id);
  let outcome: Attempt;
  try {
    outcome = await deliver(plugin.settings, backup, meta);
  } catch (err) {
    if (err instanceof BackendUnreachable) {
      backup.downSince ??= Date.now();
      return;
    }
    if (!(err instanceof BackendError)) throw err;
    // The backend answered but the session failed (a non-2xx banner, a timeout, a dropped connection).
    return retry(current, meta, () => (err as Error).message, meta.envelope.rcptTo);
  }
  if (outcome.refused.length > 0) {
    const reply = replyText(outcome.refusal);
    const failure: Failure = {
      kind: 'refused',
      reason: `refused by the backend: ${reply}`,
      why: 'backend_refused',
      ...(outcome.refusal ? { code: outcome.refusal.code } : {}),
      // Each recipient with the reply it got (the backend may refuse one as unknown, another as over quota).
      recipients: outcome.refused.map((address) => ({ address, reply: ownReply(outcome)(address) })),
    };
    if (outcome.pending.length === 0) {
      if (outcome.refused.length !== meta.envelope.rcptTo.length) await backup.spool.recordAttempt(id, failure.reason, null, outcome.refused);
      schedule.delete(id);
      return returnOrHold(plugin, backup, meta, failure);
    }
    // Some recipients refused, some deferred: the refused ones are returned or held in a copy, the others stay
    // kept. Narrowed first, so a failure on the way never sends the message again to those who have it.
    await backup.spool.recordAttempt(id, failure.reason, null, [...outcome.refused, ...outcome.pending]);
    const copy = await backup.spool.store({
      raw: (await backup.spool.stream(id)).stream,
      envelope: { mailFrom: meta.envelope.mailFrom, rcptTo: outcome.refused },
      client: meta.client,
      receivedAt: meta.receivedAt,
      ...(meta.replay ? { replay: meta.replay } : {}),
    });
    await returnOrHold(plugin, backup, copy, failure);
    return retry(current, meta, ownReply(outcome), outcome.pending);
  }
  if (outcome.pending.length > 0) return retry(current, meta, ownReply(outcome), outcome.pending);
  await backup.spool.remove(id);
  schedule.delete(id);
  logDecision(plugin, plugin, {
    action: 'drain',
    ip: meta.client.address,
    check: 'store_and_forward',
    reason: 'delivered',
    code: outcome.reply?.code ?? 250,
    extra: { id, rcpts: meta.envelope.rcptTo.length, waited: Math.round((Date.now() - meta.receivedAt) / 1000) },
  });
}

/** The reply each recipient that was not delivered got (refused or pending: split records every one), as text. */
function ownReply(outcome: Attempt): (address: string) => string {
  return (address) => replyText(outcome.replies.get(address) ?? outcome.reply);
}

/** A temporary failure for `pending`: tried again after the backoff, or held once past max_age_days.
 * `replyOf` gives each recipient's reply (one text for all when the session failed). */
async function retry(current: Drain, meta: StoredMeta, replyOf: (address: string) => string, pending: string[]): Promise<void> {
  // The log line and the spool's last error: the first pending recipient's reply.
  const reply = replyOf(pending[0] ?? '');
  const { plugin, backup, schedule } = current;
  const now = Date.now();
  // Past max_age only after an earlier temporary failure too (attempts counts them): the first answer of a
  // backend back from a long outage (a milter still starting) does not expire what was never really tried.
  if (meta.attempts > 0 && afterReply(meta, 451, now, planSettings(backup)).action === 'expired') {
    if (pending.length !== meta.envelope.rcptTo.length) await backup.spool.recordAttempt(meta.id, reply, null, pending);
    schedule.delete(meta.id);
    return returnOrHold(plugin, backup, meta, {
      kind: 'expired',
      reason: `not delivered within ${backup.settings.maxAgeMs / 86_400_000} days: ${reply}`,
      why: 'max_age',
      recipients: pending.map((address) => ({ address, reply: replyOf(address) })),
    });
  }
  const next = nextAttemptAt(meta, now, planSettings(backup));
  await backup.spool.recordAttempt(meta.id, reply, next, pending);
  schedule.set(meta.id, next);
  plugin.loginfo(`store-and-forward: ${meta.id}: deferred (${reply}); trying again in ${Math.round((next - now) / 1000)} s`);
}
