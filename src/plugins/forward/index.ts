// mailproxy-forward (haraka-in): forwards each message to the backend over WireGuard, in the same backend
// session that checked its recipients, with the client's identity passed by XCLIENT.
//
//   client RCPT ─▶ (first one) connect from the WireGuard address, [EHLO,] XCLIENT ..., EHLO, MAIL FROM
//               ─▶ RCPT TO at the backend: its reply (code and enhanced status) is the client's reply
//   end of data ─▶ DATA, body in one write (or streamed in large writes), end-of-data reply is the client's reply
//
// Fail closed: no XCLIENT, a refused XCLIENT, an unreachable or silent backend all give the client 4xx.
// Haraka's 250 is sent only after the backend's 250, and only when every recipient the client got 250
// for was accepted in the backend session carrying the message, so mail is never accepted and dropped.
// Haraka treats a plugin that throws as "carry on": every hook here catches and answers DENYSOFT.
//
// This file registers the hooks and runs each client transaction through them; settings.ts reads the
// settings, open.ts opens the backend session (XCLIENT), transaction.ts carries the transaction in it
// (envelope, replay, body), replies.ts says what the client hears, state.ts is what a connection keeps.
import type { Address, Connection, Transaction } from '../haraka/connection';
import { constants } from '../haraka/constants';
import type { Next } from '../haraka/plugin';
import { captureRaw, MAX_HEADER_BYTES, unchangedRefusal } from '../raw-message';
import { backendSessions } from '../limits/backend-sessions';
import type { Reply } from './backend-session';
import { startClientNameLookup } from './client-name';
import { abortStore, activeBackupMx, answerStoredRecipient, configureBackupMx, flushBackupMx, storedRecipients, storeMessage, type BackupMx } from './backup';
import { startDrain, stopDrain } from './drain';
import { BackendUnreachable, backendFor, forgetBackendXclient, xclientAfterHelo } from './open';
import { closeKeptSessions, keepSession, mayKeep } from './pool';
import { backendBusy, backendUnavailable, isOk, refusal, refuse, transactionLost } from './replies';
import { readForwardSettings, readLocalDomains, type ForwardPlugin } from './settings';
import { BackendBusy, backendState, bindingOf, BOUND, dropBackend, liveBinding, OPENING, STATE, type Binding } from './state';
import { backendRecipient, holdClientTimer, liveOrReplayed, MAIL_PARAMS, mailFromLine, messagePayload, ReplayRefused, sendEnvelope, streamBody } from './transaction';

/** Messages up to this size go to the backend in one write from a copy of the stored lines
 * (raw-message.ts); equal to connection.ini spool_after, so no spooled message is also copied. */
const CAPTURE_LIMIT = 256 * 1024;

export function register(this: ForwardPlugin): void {
  this.load_forward_ini();
  this.load_host_list();
  this.register_hook('lookup_rdns', 'lookup_client_name');
  this.register_hook('mail', 'prepare_transaction');
  this.register_hook('rcpt', 'check_recipient');
  this.register_hook('data', 'check_backend_data');
  this.register_hook('queue', 'forward_message');
  this.register_hook('reset_transaction', 'reset_backend_transaction');
  this.register_hook('disconnect', 'close_backend');
}

export function load_forward_ini(this: ForwardPlugin): void {
  this.settings = readForwardSettings(this.config, () => this.load_forward_ini());
  forgetBackendXclient();
  // Kept sessions were greeted under the old settings (another backend, reuse turned off).
  closeKeptSessions();
  const opening = configureBackupMx(this.settings.storeAndForward, (message) => this.lognotice(message));
  if (!opening) return stopDrain();
  opening.then(
    (backup) => startDrain(this, backup),
    (err: Error) => this.logerror(`store-and-forward: cannot open ${this.settings.storeAndForward.dir} (forwarding live only): ${err.message}`),
  );
}

/** Haraka's graceful stop: the recipient cache's last changes are written. */
export function shutdown(this: ForwardPlugin): void {
  stopDrain();
  closeKeptSessions(true);
  flushBackupMx();
}

/** A recipient of this transaction was accepted by the backend itself: the transaction stays live. */
function hasLiveRecipient(transaction: Transaction): boolean {
  return (bindingOf(transaction)?.accepted ?? 0) > 0;
}

export function load_host_list(this: ForwardPlugin): void {
  const { localDomains, postmasterDomain } = readLocalDomains(this.config, () => this.load_host_list());
  this.localDomains = localDomains;
  this.postmasterDomain = postmasterDomain;
}

export function lookup_client_name(this: ForwardPlugin, next: Next, connection: Connection): void {
  // Replaces Haraka's own reverse lookup (one PTR query, not two), bounded by rdns_timeout, and also
  // forward-confirms the name for XCLIENT NAME. Nothing waits for it here: the banner goes out at once
  // and the lookup runs meanwhile; the first RCPT for our domains awaits it (clientFacts, backendFor),
  // which is before Haraka writes the Received header at DATA.
  const ip = connection.remote.ip;
  const pending = startClientNameLookup(connection, ip, this.settings.rdnsTimeoutMs);
  // Runs after this function returns, even for a lookup the cache has already answered.
  void pending.then((name) => {
    // Haraka's remote.host and remote.info as its own lookup would have set them (the Received header's
    // "(name [ip])", the disconnect log line), unless something changed the client meanwhile.
    if (connection.remote.ip !== ip) return;
    connection.remote.host = name.ptr;
    connection.remote.info = name.ptr;
  });
  // Haraka sets remote.host and remote.info to 'Unknown' (its word for "no name") and runs the connect
  // hooks, which send the banner, before next() returns.
  next(constants.OK, '');
  // Until the lookup finishes: not looked up yet, Haraka's own value before any lookup, which every
  // plugin reads as no name (the EHLO reply then says "Hello [ip]").
  if (connection.remote.ip === ip) {
    connection.remote.host = null;
    connection.remote.info = null;
  }
}

export function prepare_transaction(this: ForwardPlugin, next: Next, connection: Connection, params: [Address, Record<string, string>?]): void {
  const transaction = connection.transaction;
  if (transaction) {
    // MAIL FROM parameters the backend must see again (BODY=8BITMIME, SMTPUTF8).
    transaction.notes[MAIL_PARAMS] = params[1] ?? {};
    // From MAIL on, so that the Received line Haraka stores before the data hook is captured too.
    captureRaw(transaction, { messageLimit: CAPTURE_LIMIT, headerLimit: MAX_HEADER_BYTES });
  }
  next();
}

export function check_recipient(this: ForwardPlugin, next: Next, connection: Connection, params: [Address]): void {
  const transaction = connection.transaction;
  const target = backendRecipient(this, params[0]);
  // Not ours: no plugin accepts it, so Haraka answers 550 (haraka-in never relays); the backend never hears of it.
  if (!transaction || !target) return next();
  let backup: BackupMx | null = null;
  (async () => {
    backup = await activeBackupMx();
    // Stored already, or the backend is known to be away: the cache answers, the backend is not tried.
    if (backup && (storedRecipients(transaction) || (backup.downSince !== null && !hasLiveRecipient(transaction)))) {
      return answerStoredRecipient(this, connection, transaction, backup, target, next);
    }
    const bound = await liveOrReplayed(this, connection, transaction);
    const state = await backendFor(this, connection);
    const open = bound !== undefined && state.binding === bound;
    const lines = open ? [] : [mailFromLine(transaction, state.esmtp)];
    lines.push(`RCPT TO:<${target}>`);
    const replies = await sendEnvelope(state, lines);
    let binding = bound as Binding;
    if (!open) {
      const mailReply = replies.shift() as Reply;
      if (!isOk(mailReply)) {
        transaction.results.add(this, { fail: `backend MAIL FROM ${mailReply.code}` });
        if (mailReply.code === 421) dropBackend(connection);
        const [code, dsn] = refusal(mailReply);
        return next(code, dsn);
      }
      binding = { session: state.session, accepted: 0, recipients: [] };
      state.binding = binding;
      transaction.notes[BOUND] = binding;
    }
    const rcptReply = replies.shift() as Reply;
    backup?.recipients.record(target, rcptReply.code, rcptReply.lines.join(' '));
    if (isOk(rcptReply)) {
      binding.accepted += 1;
      binding.recipients.push(target);
      if (binding.accepted === 1 && this.settings.keepAliveMs > 0) state.session.keepAlive(this.settings.keepAliveMs);
      transaction.results.add(this, { pass: `rcpt ${target}` });
      return next(constants.OK);
    }
    transaction.results.add(this, { fail: `backend RCPT ${rcptReply.code}` });
    if (rcptReply.code === 421) dropBackend(connection);
    const [code, dsn] = refusal(rcptReply);
    return next(code, dsn);
  })().catch((err: Error) => {
    if (err instanceof BackendBusy) return backendBusy(this, connection, next, err);
    if (err instanceof ReplayRefused) return transactionLost(this, connection, next, 'this recipient', err.message);
    if (err instanceof BackendUnreachable && backup && !hasLiveRecipient(transaction)) {
      connection.logwarn(this, `${err.message}: the backend is unreachable, keeping mail for known recipients`);
      backup.downSince ??= Date.now();
      return answerStoredRecipient(this, connection, transaction, backup, target, next);
    }
    backendUnavailable(this, connection, next, 'recipient check failed', err);
  });
}

/** DATA: nothing to check here any more; a lost backend session is replayed at the end of data. */
export function check_backend_data(this: ForwardPlugin, next: Next): void {
  next();
}

export function forward_message(this: ForwardPlugin, next: Next, connection: Connection): void {
  const transaction = connection.transaction;
  const stored = storedRecipients(transaction);
  if (transaction && stored) return keepMessage(this, connection, transaction, stored, next);
  const first = bindingOf(transaction);
  if (!transaction || !first) return transactionLost(this, connection, next, 'the end of data');
  // Every recipient the client got 250 for must be a recipient of the backend transaction that carries the message.
  if (first.accepted === 0 || first.accepted !== transaction.rcpt_to.length) {
    return backendUnavailable(this, connection, next, `backend accepted ${first.accepted} recipients, the client was told 250 for ${transaction.rcpt_to.length}`);
  }
  const settings = this.settings;
  const unchangeable = unchangedRefusal(transaction);
  // The backend transaction stays open: the reset hook RSETs it.
  if (unchangeable) return refuse(this, next, transaction, { code: unchangeable.code, lines: [unchangeable.text] });
  const releaseClientTimer = holdClientTimer(connection, settings);
  (async () => {
    let bound: Binding | undefined;
    try {
      bound = await liveOrReplayed(this, connection, transaction);
    } catch (err) {
      if (err instanceof ReplayRefused || err instanceof BackendBusy) return transactionLost(this, connection, next, 'the end of data', err.message);
      throw err;
    }
    const state = backendState(connection);
    if (!bound || !state || !liveBinding(connection, bound)) return transactionLost(this, connection, next, 'the end of data');
    // DATA goes to the backend only now that the whole message is here: sent when the client said DATA,
    // the backend would sit idle in DATA for as long as the client takes to upload (a slow sender outlasts
    // Postfix's smtpd_timeout), and it costs one round trip.
    state.session.keepAlive(null);
    state.inData = true;
    state.transactions += 1;
    const go = await state.session.command('DATA');
    if (go.code !== 354) {
      // A refused DATA leaves the backend transaction open: the reset hook RSETs it.
      state.inData = false;
      if (go.code === 421) dropBackend(connection);
      return refuse(this, next, transaction, go);
    }
    const payload = messagePayload(transaction);
    // Waiting before writing: the end-of-data reply can never arrive unawaited (which would fail the session).
    // The wait is data_timeout after the body; a streamed body's own deadline bounds the part before.
    const verdict = state.session.read(payload ? settings.dataTimeoutMs : settings.dataTimeoutMs + settings.bodyTimeoutMs);
    verdict.catch(() => undefined);
    if (payload) state.session.write(payload);
    else await streamBody(state, transaction, settings);
    const done = await verdict;
    state.inData = false;
    state.binding = null;
    if (isOk(done)) {
      transaction.results.add(this, { pass: `backend ${done.code}` });
      return next(constants.OK, `Queued by backend: ${done.lines.join(' ')}`);
    }
    if (done.code === 421) dropBackend(connection);
    return refuse(this, next, transaction, done);
  })()
    .catch((err: Error) => backendUnavailable(this, connection, next, 'forwarding failed', err))
    .finally(releaseClientTimer);
}

/** A stored transaction's end of data: every recipient told 250 is a stored one, and the store is open. */
function keepMessage(plugin: ForwardPlugin, connection: Connection, transaction: Transaction, stored: string[], next: Next): void {
  if (stored.length === 0 || stored.length !== transaction.rcpt_to.length) {
    return backendUnavailable(plugin, connection, next, `kept ${stored.length} recipients, the client was told 250 for ${transaction.rcpt_to.length}`);
  }
  const unchangeable = unchangedRefusal(transaction);
  if (unchangeable) return refuse(plugin, next, transaction, { code: unchangeable.code, lines: [unchangeable.text] });
  void activeBackupMx().then((backup) => {
    if (backup) storeMessage(plugin, connection, transaction, backup, next);
    else backendUnavailable(plugin, connection, next, 'store-and-forward was turned off during this transaction');
  });
}

export function reset_backend_transaction(this: ForwardPlugin, next: Next, connection: Connection): void {
  abortStore(connection.transaction);
  const state = backendState(connection);
  const bound = bindingOf(connection.transaction);
  if (state && !state.inData && (bound?.accepted ?? 0) === 0) {
    // A transaction that ended with no recipient the backend accepted: its session (and slot) is not kept
    // for a client that may only have come to probe addresses; the next transaction opens a new one.
    dropBackend(connection, true);
  } else if (state?.inData) {
    // The backend is inside DATA: only closing the connection aborts the transaction, and an RSET
    // written now would land in the body.
    dropBackend(connection);
  } else if (state?.binding && state.session.usable) {
    state.binding = null;
    state.session.keepAlive(null);
    state.session.command('RSET').then(
      (reply) => {
        if (!isOk(reply)) dropBackend(connection);
      },
      () => dropBackend(connection),
    );
  }
  next();
}

export function close_backend(this: ForwardPlugin, next: Next, connection: Connection): void {
  (connection.notes[OPENING] as AbortController | undefined)?.abort();
  const state = backendState(connection);
  // A session whose client said HELO tells nothing of another XCLIENT: xclientAfterHelo knows or asks.
  const mayAsk = state !== undefined && state.xclient === null && state.identified && !state.esmtp;
  const keep =
    this.settings.reuseSessions &&
    state !== undefined &&
    mayKeep(
      {
        reusable: state.xclient !== null || mayAsk,
        clean: state.binding === null && !state.inData && state.session.idle,
        authenticated: connection.notes.auth_user !== undefined,
        openedAt: state.openedAt,
        transactions: state.transactions,
        generation: state.generation,
      },
      Date.now(),
    );
  if (!keep || !state) {
    // A session still opening holds a slot but is not in the notes yet.
    backendSessions.release(connection);
    dropBackend(connection, true);
    return next();
  }
  state.detach();
  delete connection.notes[STATE];
  const { session, openedAt, transactions, generation } = state;
  // The client's slot is held until the session is kept or closed, so that an EHLO asking never exceeds the cap.
  const keepWith = (xclient: ReadonlySet<string> | null) => {
    backendSessions.release(connection);
    if (xclient) keepSession({ session, xclient, openedAt, transactions, generation });
    else session.quit();
  };
  if (state.xclient) keepWith(state.xclient);
  else
    xclientAfterHelo(session, this.settings)
      .then(keepWith)
      .catch(() => {
        backendSessions.release(connection);
        session.destroy();
      });
  next();
}
