// A client transaction carried in the connection's backend session: the envelope (MAIL FROM with the
// client's parameters, RCPT TO), replayed in a new session when the first was lost before the end of data,
// and the message body streamed to the backend.
import type { Address, Connection, Transaction } from '../haraka/connection';
import { captureOf, pipeRaw, rawPayload, type RawCapture } from '../raw-message';
import { BackendError, type Reply } from './backend-session';
import { backendFor } from './open';
import { isOk } from './replies';
import type { ForwardPlugin, LocalDomains, Settings } from './settings';
import { BOUND, bindingOf, liveBinding, type BackendState, type Binding } from './state';

/** Transaction note: the MAIL FROM parameters the backend must see again (BODY=8BITMIME, SMTPUTF8). */
export const MAIL_PARAMS = 'mailproxy_mail_params';
const NOTHING = Buffer.alloc(0);

/** The backend no longer accepts what the client was told 250 for, in a new session. */
export class ReplayRefused extends BackendError {}

/** The address the backend is asked about: a recipient at one of our domains, or the bare postmaster
 * (RFC 5321 §4.5.1: it must be accepted), which goes to the postmaster of the first domain. */
export function backendRecipient(domains: LocalDomains, recipient: Address | undefined): string | null {
  if (!recipient) return null;
  const domain = (recipient.host ?? '').toLowerCase();
  if (domain) return domains.localDomains.has(domain) ? recipient.address : null;
  return recipient.user?.toLowerCase() === 'postmaster' && domains.postmasterDomain ? `postmaster@${domains.postmasterDomain}` : null;
}

/** The client's MAIL FROM parameters the backend must see again (BODY=8BITMIME, SMTPUTF8), as sent. */
export function forwardedMailParams(transaction: Transaction): string[] {
  const params = (transaction.notes[MAIL_PARAMS] as Record<string, string> | undefined) ?? {};
  const extra: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    const name = key.toUpperCase();
    if (name === 'BODY' && /^(7BIT|8BITMIME)$/i.test(value)) extra.push(`BODY=${value.toUpperCase()}`);
    if (name === 'SMTPUTF8') extra.push('SMTPUTF8');
  }
  return extra;
}

/** MAIL FROM with the parameters when the session is ESMTP (after HELO it takes none). */
export function mailFromCommand(sender: string, params: readonly string[], esmtp: boolean): string {
  return `MAIL FROM:<${sender}>${esmtp ? params.map((param) => ` ${param}`).join('') : ''}`;
}

export function mailFromLine(transaction: Transaction, esmtp: boolean): string {
  return mailFromCommand(transaction.mail_from.address, esmtp ? forwardedMailParams(transaction) : [], esmtp);
}

/** MAIL/RCPT lines in one write when the backend pipelines, else one by one until the first refusal. */
export async function sendEnvelope(state: BackendState, lines: string[]): Promise<Reply[]> {
  if (state.pipelining) return state.session.send(...lines);
  const replies: Reply[] = [];
  for (const line of lines) {
    const reply = await state.session.command(line);
    replies.push(reply);
    if (!isOk(reply)) break;
  }
  return replies;
}

/**
 * The transaction's binding, live. One whose backend session was lost (the backend's idle close,
 * stress, an error) while the client took its time is replayed in a new session: MAIL and every
 * recipient the client was told 250 for, each of which must be accepted again (else ReplayRefused). This
 * replaces the NOOP keepalive that Postfix under stress counts as junk commands.
 */
export async function liveOrReplayed(plugin: ForwardPlugin, connection: Connection, transaction: Transaction): Promise<Binding | undefined> {
  const bound = bindingOf(transaction);
  if (!bound || bound.accepted === 0 || liveBinding(connection, bound)) return bound;
  connection.loginfo(plugin, `backend session lost with ${bound.accepted} recipient(s) accepted: replaying the transaction in a new session`);
  const state = await backendFor(plugin, connection);
  const lines = [mailFromLine(transaction, state.esmtp), ...bound.recipients.map((recipient) => `RCPT TO:<${recipient}>`)];
  const replies = await sendEnvelope(state, lines);
  const refused = replies.find((reply) => !isOk(reply));
  if (refused || replies.length !== lines.length) {
    const reply = refused ?? null;
    throw new ReplayRefused(`the backend refused the replayed transaction${reply ? ` with ${reply.code} ${reply.lines.join(' ')}` : ''}`, reply);
  }
  const binding: Binding = { session: state.session, accepted: bound.recipients.length, recipients: [...bound.recipients] };
  state.binding = binding;
  transaction.notes[BOUND] = binding;
  transaction.results.add(plugin, { pass: 'replayed' });
  return binding;
}

/** While the backend decides, the client is silent too: Haraka's inactivity timer must not end the
 * session (and answer 421) while the backend may still accept the message. */
export function holdClientTimer(connection: Connection, settings: Settings): () => void {
  const wait = settings.replyTimeoutMs + settings.bodyTimeoutMs + settings.dataTimeoutMs + 5000;
  if (wait <= settings.clientTimeoutMs) return () => undefined;
  const sockets = [connection.client, connection.client.cleartext?.socket].filter((socket) => socket !== undefined);
  for (const socket of sockets) socket.setTimeout(wait);
  return () => {
    for (const socket of sockets) socket.setTimeout(settings.clientTimeoutMs);
  };
}

/** The message as one write (the body after DATA's 354, ending dot included), or null when it is too large
 * to be kept whole and must be streamed (streamBody). */
export function messagePayload(transaction: Transaction): Buffer | null {
  return rawPayload(transaction.message_stream, captureOf(transaction) as RawCapture, NOTHING, true);
}

/** The body of a message too large for one write, piped from Haraka's store within body_timeout. */
export function streamBody(state: BackendState, transaction: Transaction, settings: Settings): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const writer = state.session.bodyWriter();
    const deadline = setTimeout(() => {
      reject(new BackendError(`message data took over ${settings.bodyTimeoutMs} ms to reach the backend`));
      state.session.destroy();
    }, settings.bodyTimeoutMs);
    const settle = (error?: Error) => {
      clearTimeout(deadline);
      if (error) reject(error);
      else resolve();
    };
    writer.once('finish', () => settle());
    writer.once('error', settle);
    transaction.message_stream.once('error', settle);
    pipeRaw(transaction.message_stream, captureOf(transaction) as RawCapture, writer, NOTHING, { dot_stuffed: false, ending_dot: true });
  });
}
