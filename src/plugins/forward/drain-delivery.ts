// One delivery attempt of a kept message: a backend session of its own, XCLIENT as the original client
// (address, port, name, HELO, the client's own EHLO or HELO), MAIL FROM with the client's parameters, the
// recipients still to deliver, DATA and the bytes exactly as stored. What each recipient got decides.
import { BackendError, type BackendSession, type Reply } from './backend-session';
import type { BackupMx } from './backup';
import { connectBackend, greetBackend } from './open';
import { isOk } from './replies';
import type { Settings } from './settings';
import type { StoredMeta } from '../store-forward/spool-meta';
import { mailFromCommand } from './transaction';
import type { ClientFacts } from './xclient';

export interface Attempt {
  /** The last reply that decided (the end of data's, or the refusing RCPT's). */
  reply: Reply | null;
  /** Recipients to try again (4xx). */
  pending: string[];
  /** Recipients the backend refused for good (5xx). */
  refused: string[];
  /** The first 5xx reply a recipient or the message got, for the hold's reason. */
  refusal: Reply | null;
  /** The reply each recipient not delivered got (4xx or 5xx), for its line in a DSN and the log. */
  replies: Map<string, Reply>;
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
export async function deliver(settings: Settings, backup: BackupMx, meta: StoredMeta): Promise<Attempt> {
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
    if (go.code !== 354)
      return {
        reply: go,
        ...merge(
          verdicts,
          split(accepted, () => go),
        ),
      };
    const final = session.read(settings.dataTimeoutMs + settings.bodyTimeoutMs);
    final.catch(() => undefined);
    const { stream } = await backup.spool.stream(meta.id);
    await new Promise<void>((resolve, reject) => {
      const writer = session.bodyWriter();
      const fail = (err: Error) => {
        stream.destroy();
        reject(err);
      };
      writer.once('finish', resolve);
      writer.once('error', fail);
      stream.once('error', fail);
      stream.pipe(writer);
    });
    const done = await final;
    if (isOk(done)) return { reply: done, ...verdicts };
    return {
      reply: done,
      ...merge(
        verdicts,
        split(accepted, () => done),
      ),
    };
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
  const replies = new Map<string, Reply>();
  let refusal: Reply | null = null;
  recipients.forEach((rcpt, index) => {
    const reply = replyOf(index);
    if (!reply) throw new BackendError('backend sent fewer replies than commands');
    if (isOk(reply, 2)) return;
    replies.set(rcpt, reply);
    // Anything but 2xx and 5xx (4xx, or a reply of no class) is tried again: never counted as delivered.
    if (!isOk(reply, 5)) pending.push(rcpt);
    else {
      refused.push(rcpt);
      refusal ??= reply;
    }
  });
  return { pending, refused, refusal, replies };
}

function merge(a: Omit<Attempt, 'reply'>, b: Omit<Attempt, 'reply'>): Omit<Attempt, 'reply'> {
  return { pending: [...a.pending, ...b.pending], refused: [...a.refused, ...b.refused], refusal: a.refusal ?? b.refusal, replies: new Map([...a.replies, ...b.replies]) };
}
