// The drain of the backup MX: while mail is kept or the backend is marked unreachable, a probe every
// probe_interval (connect, banner, QUIT); once the backend answers, kept messages go to it oldest first,
// at most drain_sessions at a time, each in its own session with XCLIENT replaying the original client
// (address, port, name, HELO), so the backend's filters and SPF see the real sender as for live mail.
// Live mail never waits for it: drain sessions take no client's backend slot.
//
// After an attempt: every recipient accepted and the message accepted → removed; a 4xx (a recipient or
// the message) → kept for a later try (drain-plan's backoff), narrowed to the recipients still pending;
// a 5xx, or past max_age_days → held for the operator (`mailproxy queue held`), never bounced here.
//
// The operator releases and deletes held messages from another process (`mailproxy queue release|delete
// --instance in`), so the spool's counts (the max_disk_mb budget) are counted again from the directories
// at most once a minute; a released message is in ready/ and goes at the next probe.
import type { Reply } from './backend-session';
import { BackendError, type BackendSession } from './backend-session';
import { logDecision } from '../decision-log';
import { afterReply, DRAIN_DEFAULTS, drainStep, nextAttemptAt } from '../store-forward/drain-plan';
import type { StoredMeta } from '../store-forward/spool-meta';
import type { BackupMx } from './backup';
import { BackendUnreachable, connectBackend, greetBackend } from './open';
import { isOk } from './replies';
import type { ForwardPlugin, Settings } from './settings';
import { mailFromCommand } from './transaction';
import type { ClientFacts } from './xclient';

interface Drain {
  timer: NodeJS.Timeout;
  running: boolean;
  /** When the spool's counts were last taken from its directories (ms since the epoch). */
  countedAt: number;
}

const RECOUNT_MS = 60_000;

const drains = new WeakMap<BackupMx, Drain>();

/** Starts the probe-and-drain loop for this backup MX (once). */
export function startDrain(plugin: ForwardPlugin, backup: BackupMx): void {
  if (drains.has(backup)) return;
  const drain: Drain = { timer: setInterval(() => void tick(plugin, backup, drain), backup.settings.probeIntervalMs), running: false, countedAt: Date.now() };
  drain.timer.unref();
  drains.set(backup, drain);
  void tick(plugin, backup, drain);
}

async function tick(plugin: ForwardPlugin, backup: BackupMx, drain: Drain): Promise<void> {
  if (drain.running) return;
  drain.running = true;
  try {
    // A recount that overlapped a change of this process is skipped and tried at the next tick.
    if (Date.now() - drain.countedAt >= RECOUNT_MS && (await backup.spool.recount())) drain.countedAt = Date.now();
    const ready = await backup.spool.listReady();
    if (ready.length === 0 && backup.downSince === null) return;
    if (!(await backendAnswers(plugin.settings))) {
      backup.downSince ??= Date.now();
      return;
    }
    if (backup.downSince !== null) plugin.lognotice(`store-and-forward: the backend answers again after ${Math.round((Date.now() - backup.downSince) / 1000)} s`);
    backup.downSince = null;
    await drainReady(plugin, backup, ready);
  } catch (err) {
    plugin.logerror(`store-and-forward: drain failed: ${(err as Error).message}`);
  } finally {
    drain.running = false;
  }
}

async function backendAnswers(settings: Settings): Promise<boolean> {
  try {
    const session = await connectBackend(settings);
    session.quit();
    return true;
  } catch {
    return false;
  }
}

/** Oldest first, at most drain_sessions at a time; stops at the first sign the backend is gone again. */
async function drainReady(plugin: ForwardPlugin, backup: BackupMx, ready: string[]): Promise<void> {
  const queue = [...ready];
  const worker = async () => {
    for (let id = queue.shift(); id !== undefined && backup.downSince === null; id = queue.shift()) {
      await drainOne(plugin, backup, id);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, backup.settings.drainSessions) }, worker));
}

function planSettings(backup: BackupMx) {
  return { ...DRAIN_DEFAULTS, maxAgeMs: backup.settings.maxAgeMs };
}

async function drainOne(plugin: ForwardPlugin, backup: BackupMx, id: string): Promise<void> {
  const meta = await backup.spool.readMeta(id);
  const now = Date.now();
  const step = drainStep(meta, now, planSettings(backup));
  if (step.action === 'wait') return;
  if (step.action === 'expired') return hold(plugin, backup, meta, `not delivered within ${backup.settings.maxAgeMs / 86_400_000} days`, 'max_age');
  let outcome: Attempt;
  try {
    outcome = await deliver(plugin.settings, backup, meta);
  } catch (err) {
    if (err instanceof BackendUnreachable) {
      backup.downSince ??= Date.now();
      return;
    }
    // The backend answered but the session failed (a timeout, a dropped connection): try again later.
    await backup.spool.recordAttempt(id, (err as Error).message, nextAttemptAt(meta, Date.now(), planSettings(backup)));
    plugin.logwarn(`store-and-forward: ${id}: ${(err as Error).message}; trying again later`);
    return;
  }
  const reply = outcome.reply ? `${outcome.reply.code} ${outcome.reply.lines.join(' ')}` : '';
  if (outcome.refused.length > 0) {
    if (outcome.pending.length > 0 || outcome.refused.length !== meta.envelope.rcptTo.length) {
      await backup.spool.recordAttempt(id, reply, null, [...outcome.refused, ...outcome.pending]);
    }
    return hold(plugin, backup, meta, `refused by the backend: ${reply}`, 'backend_refused', outcome.reply?.code);
  }
  if (outcome.pending.length > 0) {
    const next = afterReply(meta, outcome.reply?.code ?? 451, Date.now(), planSettings(backup));
    if (next.action === 'expired') return hold(plugin, backup, meta, `not delivered within ${backup.settings.maxAgeMs / 86_400_000} days: ${reply}`, 'max_age', outcome.reply?.code);
    await backup.spool.recordAttempt(id, reply, next.action === 'retry' ? next.nextAttemptAt : null, outcome.pending);
    plugin.loginfo(`store-and-forward: ${id}: deferred by the backend (${reply}); trying again later`);
    return;
  }
  await backup.spool.remove(id);
  logDecision(plugin, plugin, {
    action: 'drain',
    ip: meta.client.address,
    check: 'store_and_forward',
    reason: 'delivered',
    code: outcome.reply?.code ?? 250,
    extra: { id, rcpts: meta.envelope.rcptTo.length, waited: Math.round((Date.now() - meta.receivedAt) / 1000) },
  });
}

/** Holds the message with `reason` in its meta (for the operator); the decision line gets `why`, a word. */
async function hold(plugin: ForwardPlugin, backup: BackupMx, meta: StoredMeta, reason: string, why: 'backend_refused' | 'max_age', code?: number): Promise<void> {
  await backup.spool.hold(meta.id, reason);
  logDecision(plugin, plugin, {
    action: 'hold',
    ip: meta.client.address,
    check: 'store_and_forward',
    reason: why,
    ...(code === undefined ? {} : { code }),
    extra: { id: meta.id },
  });
}

interface Attempt {
  /** The last reply that decided (the end of data's, or the refusing RCPT's). */
  reply: Reply | null;
  /** Recipients to try again (4xx). */
  pending: string[];
  /** Recipients the backend refused for good (5xx). */
  refused: string[];
}

function factsOf(meta: StoredMeta): ClientFacts {
  const replay = meta.replay;
  return {
    name: replay?.xclientName ?? meta.client.rdnsName ?? '[UNAVAILABLE]',
    ip: meta.client.address,
    port: meta.client.port,
    helo: meta.client.helo,
    esmtp: replay?.esmtp ?? meta.client.proto.startsWith('ESMTP'),
    login: replay?.login ?? null,
    destAddr: replay?.destAddr ?? '',
    destPort: replay?.destPort ?? 25,
  };
}

/** One attempt: a session of its own, XCLIENT as the original client, the envelope, the raw bytes. */
async function deliver(settings: Settings, backup: BackupMx, meta: StoredMeta): Promise<Attempt> {
  const session = await connectBackend(settings);
  try {
    const greeted = await greetBackend(session, settings, null, async () => factsOf(meta), {
      tls: () => undefined,
      xclient: () => undefined,
      noXclient: () => undefined,
      warn: () => undefined,
    });
    const recipients = meta.envelope.rcptTo;
    const lines = [mailFromCommand(meta.envelope.mailFrom, meta.replay?.mailParams ?? [], greeted.esmtp), ...recipients.map((rcpt) => `RCPT TO:<${rcpt}>`)];
    const replies = greeted.pipelining ? await session.send(...lines) : await sequential(session, lines);
    const mail = replies[0] as Reply;
    if (!isOk(mail)) return { reply: mail, ...split(recipients, () => mail) };
    const accepted = recipients.filter((_, index) => isOk(replies[index + 1] as Reply));
    const verdicts = split(recipients, (index) => replies[index + 1] as Reply);
    if (accepted.length === 0) return { reply: (replies[1] as Reply) ?? null, ...verdicts };
    const go = await session.command('DATA');
    if (go.code !== 354) return { reply: go, ...merge(verdicts, split(accepted, () => go)) };
    const final = session.read(settings.dataTimeoutMs + settings.bodyTimeoutMs);
    final.catch(() => undefined);
    const { stream } = await backup.spool.stream(meta.id);
    await new Promise<void>((resolve, reject) => {
      const writer = session.bodyWriter();
      writer.once('finish', resolve);
      writer.once('error', reject);
      stream.once('error', reject);
      stream.pipe(writer);
    });
    const done = await final;
    if (isOk(done)) return { reply: done, ...verdicts };
    return { reply: done, ...merge(verdicts, split(accepted, () => done)) };
  } finally {
    session.quit();
  }
}

/** Envelope commands one by one (no PIPELINING), stopping at a refused MAIL FROM. */
async function sequential(session: BackendSession, lines: string[]): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (const line of lines) {
    const reply = await session.command(line);
    replies.push(reply);
    if (replies.length === 1 && !isOk(reply)) {
      while (replies.length < lines.length) replies.push(reply);
      break;
    }
  }
  return replies;
}

/** Recipients sorted by the reply each got: 4xx pending, 5xx refused (2xx in neither). */
function split(recipients: string[], replyOf: (index: number) => Reply | undefined): Omit<Attempt, 'reply'> {
  const pending: string[] = [];
  const refused: string[] = [];
  recipients.forEach((rcpt, index) => {
    const reply = replyOf(index);
    if (!reply) throw new BackendError('backend sent fewer replies than commands');
    if (isOk(reply, 4)) pending.push(rcpt);
    else if (isOk(reply, 5)) refused.push(rcpt);
  });
  return { pending, refused };
}

function merge(a: Omit<Attempt, 'reply'>, b: Omit<Attempt, 'reply'>): Omit<Attempt, 'reply'> {
  return { pending: [...a.pending, ...b.pending], refused: [...a.refused, ...b.refused] };
}
