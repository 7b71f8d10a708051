// mailproxy-outbound (haraka-out): decides where each queued domain goes, and what its failures say.
// - Our own domains go straight back to the backend over WireGuard, never out through haraka-in's
//   public address, so mail cannot circle between the two instances.
// - Everything else goes to its MX found in DNS (port `mx_port`, 25 except on test rigs).
// - DANE (RFC 7672) first: when the domain's MX records are DNSSEC-secure and an MX host publishes
//   DNSSEC-secure TLSA records, the MX list comes from the local validating resolver, each host with
//   DANE's level for it (src/dane/route.ts). A DANE domain's MTA-STS policy governs only the hosts DANE
//   does not authenticate.
// - MTA-STS (RFC 8461): for a domain whose policy is `enforce`, only MX hosts the policy names are used,
//   and a cached policy keeps applying when DNS or the policy host fails, so a fetch failure never
//   downgrades an enforce domain to plaintext.
// - What this routing found (DANE's levels, MTA-STS enforce, the backend) decides the TLS level of each MX
//   connection in tls-policy.ts; ../haraka/patches/outbound-tls.ts has Haraka's outbound act on it.
// - Deferrals and bounces say why (explain.ts, dsn.ts); an attempt `mailproxy queue flush` brought
//   forward does not count as an attempt.
// - haraka-out's one Received line names only the VPS (received.ts), when `[received] rewrite` is on.
// - What haraka-in drops into the pickup directory (the backup MX's DSNs) is queued here (pickup.ts).
// - Its MX connections get TCP_NODELAY (../haraka/patches/connect-no-delay.ts): Haraka pipes the body and
//   then writes the final dot, which otherwise waits for the MX's delayed ACK.
import dns from 'node:dns';
import path from 'node:path';
import { constants } from '../haraka/constants';
import type { HarakaPlugin, Next } from '../haraka/plugin';
import { createMtaStsResolver, type MtaStsResolver, type PolicyDecision } from '../../mtasts/cache';
import { mxMatches } from '../../mtasts/policy';
import { parseCidr, parseHostPort, type Cidr } from '../../config/net';
import { splitPrivateMx } from './private-mx';
import { createDnssecResolver, type DnssecResolver } from '../../dane/resolver';
import { daneRoute, describeRoute, type DaneRoute, type MxHost } from '../../dane/route';
import { parseQueueFileName } from '../../haraka/queue-file-name';
import type { HMail } from '../haraka/hmail';
import { beginAttempt, isTlsReport, stateOf, tlsNow, withDelivery, type DeliveryState } from './delivery';
import { bounceFields, isExpiry, type RecipientDsn } from './dsn';
import { explainFailure, failures, type Failure } from './explain';
import { queueFileState } from './queue-file';
import { smtpTraceLine, stampLocal, type ReceivedConnection, type ReceivedTransaction } from './received';
import { configurePickup } from './pickup';
import { readOutboundSettings, type OutboundIni } from './settings';
import { captureOf, captureRaw, MAX_HEADER_BYTES, rawView, unchangedRefusal, type RawCapture, type RawStream } from '../raw-message';
import { REPLY_CODE_NOTE } from '../reply-code';
import { installDaneTls, installTlsFallback, requireTlsForDomain } from '../haraka/patches/outbound-tls';
import { owesImmediateRetry } from './tls-fallback';
import type { TlsPolicy, UsableHostTls } from './tls-policy';
import { installConnectNoDelay } from '../haraka/patches/connect-no-delay';
import { closeTlsRpt, configureTlsRpt, countPlaintextDelivery, noteStsPolicy, recordPolicyFailure, recordSession } from './tls-sessions';
import { NO_STARTTLS } from './explain';

interface Mx {
  exchange: string;
  /** The MX name an address was found under (Haraka sends it as the SNI). */
  from_dns?: string;
  priority: number;
  port?: number;
  bind?: string;
}

interface RoutePlugin extends HarakaPlugin {
  cfg: OutboundIni;
  localDomains: Set<string>;
  /** Where MX addresses are skipped (private-mx.ts); null when outbound.allow_private_mx is on. */
  privateMx: { tunnel: Cidr | null } | null;
  mtaSts: MtaStsResolver | null;
  dane: DnssecResolver | null;
  load_outbound_ini(): void;
  mtaStsForHostsWithoutDane(hmail: HMail, domain: string, route: Extract<DaneRoute, { kind: 'dane' }>): Promise<MxHost[] | Failure>;
}

/** An attempt this much before the time its queue file names was brought forward by a flush (SIGHUP). */
const AHEAD_OF_SCHEDULE_MS = 1000;

/** Deliveries whose queue file `mailproxy queue delete` removed: dropped without a bounce. */
const deleted = new WeakSet<object>();

export function register(this: RoutePlugin): void {
  this.load_outbound_ini();
  if (!installTlsFallback()) this.logerror('Haraka has no outbound TLS memory to replace: a broken STARTTLS will fail every retry');
  if (!installDaneTls()) this.logerror('node:tls has no connect to wrap: DANE cannot check certificates');
  if (!installConnectNoDelay()) this.logerror('Haraka has no tls_socket.connect to wrap: every delivery waits out a delayed ACK');
  this.register_hook('send_email', 'begin_attempt');
  this.register_hook('get_mx', 'route');
  this.register_hook('deferred', 'explain_deferral');
  this.register_hook('bounce', 'describe_bounce');
  this.register_hook('mail', 'capture_message');
  this.register_hook('data_post', 'stamp_received');
  this.register_hook('pre_send_trans_email', 'stamp_local_received');
  this.register_hook('delivered', 'count_plaintext_delivery');
}

/** Haraka's graceful stop: the TLS sessions counted last are written. */
export function shutdown(this: RoutePlugin): void {
  closeTlsRpt();
}

/** delivered: a message that went out without TLS under an MTA-STS testing policy counts for TLS reports. */
export function count_plaintext_delivery(this: RoutePlugin, next: Next, hmail: HMail, params: unknown[] = []): void {
  countPlaintextDelivery(stateOf(hmail), params[7] === true);
  next();
}

export function load_outbound_ini(this: RoutePlugin): void {
  this.cfg = readOutboundSettings(this.config, () => this.load_outbound_ini());
  const { pickup } = this.cfg;
  configurePickup(pickup.enabled && pickup.dir ? path.resolve(pickup.dir) : null, { info: (message) => this.loginfo(message), error: (message) => this.logerror(message) });
  configureTlsRpt(this.cfg.tls_rpt, { info: (message) => this.loginfo(message), error: (message) => this.logerror(message) });
  this.privateMx = this.cfg.main.private_mx_ok ? null : { tunnel: parseCidr(this.cfg.main.tunnel_network) };
  this.localDomains = new Set(this.cfg.local.domains);
  const resolver = this.cfg.dane.enabled ? parseHostPort(this.cfg.dane.resolver) : null;
  if (this.cfg.dane.enabled && !resolver) this.logerror(`[dane] resolver=${this.cfg.dane.resolver} is not ADDRESS:PORT: DANE is off`);
  this.dane = resolver ? createDnssecResolver(resolver) : null;
  const sts = this.cfg.mta_sts;
  if (!sts.enabled) {
    this.mtaSts = null;
    return;
  }
  this.mtaSts = createMtaStsResolver({
    // mailproxy-dns, loaded before this plugin, has already pointed node:dns at the configured servers.
    servers: dns.getServers(),
    port: sts.port,
    ...(sts.cache_file ? { cacheFile: path.resolve(sts.cache_file) } : {}),
  });
}

type SmtpConnection = ReceivedConnection & {
  transaction?: (ReceivedTransaction & { message_stream: RawStream; end_data(cb: () => void): unknown; discard_data?: boolean }) | null;
};

/** Messages up to this size are queued from one in-memory copy (connection.ini spool_after). */
const WHOLE_LIMIT = 256 * 1024;

/** mail: copy the message's lines as they are stored, from before Haraka's own Received line (raw-message.ts). */
export function capture_message(this: RoutePlugin, next: Next, connection: SmtpConnection): void {
  const transaction = connection.transaction;
  if (transaction) captureRaw(transaction, { messageLimit: WHOLE_LIMIT, headerLimit: MAX_HEADER_BYTES });
  next();
}

/**
 * data_post: what haraka-out queues is its own Received line (received.ts) and then the message exactly as
 * the backend sent it, so the backend's DKIM signature still verifies; Haraka's outbound queue would write
 * the header it rebuilt from its parsed copy. A message that cannot be queued unchanged is refused here,
 * before 250.
 */
export function stamp_received(this: RoutePlugin, next: Next, connection: SmtpConnection): void {
  const transaction = connection.transaction;
  if (!transaction) return next();
  try {
    const refusal = unchangedRefusal(transaction);
    if (refusal) {
      if (refusal.code === 451) this.logerror(`cannot queue the message unchanged: ${refusal.text}`);
      transaction.notes[REPLY_CODE_NOTE] = refusal.code;
      return next(refusal.code === 552 ? constants.DENY : constants.DENYSOFT, refusal.text);
    }
    transaction.message_stream = rawView(transaction.message_stream, captureOf(transaction) as RawCapture, smtpTraceLine(this.cfg.received, connection));
  } catch (err) {
    this.logerror(`cannot add the Received line: ${String(err)}`);
    return next(constants.DENYSOFT, 'Temporary failure adding the Received header');
  }
  next();
}

/** pre_send_trans_email: the Received line of a message haraka-out made itself (a bounce). */
export function stamp_local_received(this: RoutePlugin, next: Next, connection: { transaction?: ReceivedTransaction }): void {
  try {
    stampLocal(this.cfg.received, connection?.transaction);
  } catch (err) {
    this.logerror(`cannot add the Received line: ${String(err)}`);
  }
  next();
}

/**
 * Every delivery attempt starts here. One that `mailproxy queue flush` brought forward must not spend an
 * attempt: Haraka counts a failure by incrementing num_failures (and bounces once that passes the number of
 * retry intervals), so it is set one below the message's count here and restored, with the old retry time,
 * when the attempt is deferred (explain_deferral).
 */
export function begin_attempt(this: RoutePlugin, next: Next, hmail: HMail): void {
  const state = beginAttempt(hmail);
  const scheduled = hmail.filename ? parseQueueFileName(hmail.filename)?.nextAttempt.getTime() : undefined;
  if (!state.keepSchedule && scheduled !== undefined && scheduled > Date.now() + AHEAD_OF_SCHEDULE_MS) {
    state.keepSchedule = { failures: hmail.num_failures, at: scheduled };
    hmail.loginfo(`retrying ahead of schedule (queue flush): a failure will not count, and the next retry stays at ${new Date(scheduled).toISOString()}`);
  }
  if (state.keepSchedule) hmail.num_failures = state.keepSchedule.failures - 1;
  next();
}

async function lookupMx(domain: string): Promise<Mx[]> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as { get_mx(domain: string): Promise<Mx[]> };
  const exchanges = await netUtils.get_mx(domain);
  return exchanges.sort((a, b) => a.priority - b.priority);
}

async function resolveMxHosts(exchanges: Mx[]): Promise<Mx[]> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as { resolve_mx_hosts(mxs: Mx[]): Promise<Mx[]> };
  return netUtils.resolve_mx_hosts(exchanges);
}

function applyPolicy(hmail: HMail, domain: string, exchanges: Mx[], decision: PolicyDecision): Mx[] | Failure {
  const named = (mx: Mx) => decision.mx.some((pattern) => mxMatches(pattern, mx.exchange));
  if (decision.mode !== 'enforce') {
    requireTlsForDomain(domain, false);
    if (decision.mode === 'testing') {
      const strays = exchanges.filter((mx) => !named(mx));
      for (const mx of strays) hmail.loginfo(`MTA-STS ${domain} (testing): MX ${mx.exchange} is not in the policy`);
    }
    return exchanges;
  }
  const allowed = exchanges.filter(named);
  if (allowed.length === 0)
    return failures.noPolicyMx(
      domain,
      exchanges.map((mx) => mx.exchange),
    );
  if (!requireTlsForDomain(domain, true)) return failures.tlsSettingsMissing(domain);
  hmail.loginfo(`MTA-STS ${domain}: enforce (${decision.source}), TLS required to ${allowed.map((mx) => mx.exchange).join(', ')}`);
  return allowed;
}

/** The log line `mailproxy queue list` reads the policy from (src/queue/qfile.ts policiesFromLog). */
function logPolicy(hmail: HMail, domain: string, policy: TlsPolicy, detail: string): void {
  hmail.loginfo(`TLS policy for ${domain}: ${policy} (${detail})`);
}

/** The MX list for Haraka: the addresses the validating resolver gave, each under its MX name (the SNI). */
function daneExchanges(hosts: MxHost[], port: number): Mx[] {
  return hosts.flatMap((host) => host.addresses.map((address) => ({ exchange: address, from_dns: host.name, priority: host.priority, port })));
}

/**
 * DANE governs the hosts it authenticates; an MTA-STS enforce policy still governs the others of a DANE
 * domain (RFC 8461 §2): only those it names are used, and attempt.enforce gives them `verify` (tls-policy.ts).
 */
export async function mtaStsForHostsWithoutDane(this: RoutePlugin, hmail: HMail, domain: string, route: Extract<DaneRoute, { kind: 'dane' }>): Promise<MxHost[] | Failure> {
  // `encrypt` (TLSA records, none usable) authenticates nothing: MTA-STS governs those hosts too.
  const authenticated = (host: MxHost) => host.tls.level === 'dane';
  if (route.hosts.every(authenticated) || !this.mtaSts) return route.hosts;
  const decision = await this.mtaSts.policyFor(domain);
  noteStsPolicy(stateOf(hmail), domain, decision);
  if (decision.mode !== 'enforce') return route.hosts;
  stateOf(hmail).attempt.enforce = true;
  const hosts = route.hosts.filter((host) => authenticated(host) || decision.mx.some((pattern) => mxMatches(pattern, host.name)));
  if (!hosts.length)
    return failures.noPolicyMx(
      domain,
      route.hosts.map((host) => host.name),
    );
  return hosts;
}

export function route(this: RoutePlugin, next: Next, hmail: HMail, domain: string): void {
  const state = stateOf(hmail);
  const name = domain.toLowerCase();
  // Haraka's whole delivery continues from this callback: run it as this message's (../haraka/patches/outbound-tls.ts).
  const reply = (code: number, result: unknown) => withDelivery(state, () => next(code, result));
  const defer = (failure: Failure) => {
    state.attempt.failure = failure;
    if (failure.local) hmail.logerror(failure.text);
    else hmail.logwarn(failure.text);
    reply(constants.DENYSOFT, failure.text);
  };
  if (hmail.path) {
    const file = queueFileState(hmail.path);
    if (file.kind === 'deleted') {
      // `mailproxy queue delete` removed the file: Haraka still holds the envelope in memory and would
      // connect and stall on the missing body; end the delivery here instead.
      deleted.add(hmail);
      hmail.loginfo(`queue file ${hmail.path} was deleted: dropping this delivery`);
      return reply(constants.DENY, 'deleted from the queue');
    }
    if (file.kind === 'unreadable') return defer(failures.queueFile(hmail.path, file.error));
  }
  if (this.localDomains.has(name)) {
    state.attempt.toBackend = true;
    const { host, port, bind } = this.cfg.backend;
    const mx: Mx = { exchange: host, priority: 0, port };
    if (bind) mx.bind = bind;
    return reply(constants.OK, [mx]);
  }
  const mxPort = this.cfg.main.mx_port;
  // Addresses behind the tunnel or in private space are never used (private-mx.ts).
  const routeTo = (exchanges: Mx[]) => {
    if (!this.privateMx) return reply(constants.OK, exchanges);
    const { usable, skipped } = splitPrivateMx(exchanges, this.privateMx.tunnel);
    for (const { mx, reason } of skipped) hmail.logwarn(`MX ${mx.from_dns ?? mx.exchange} of ${name} at ${mx.exchange} is ${reason}: skipped`);
    if (usable.length === 0 && skipped.length > 0)
      return defer(
        failures.privateMx(
          name,
          skipped.map(({ mx, reason }) => `${mx.from_dns ?? mx.exchange} ${mx.exchange}: ${reason}`),
        ),
      );
    return reply(constants.OK, usable);
  };
  // A TLS report goes by MX with opportunistic TLS, past DANE and MTA-STS (RFC 8460 §3; tls-policy.ts).
  const tlsReport = isTlsReport(hmail);
  if (tlsReport) hmail.loginfo(`a TLS report: delivered to ${name} despite any TLS failure (RFC 8460 §3)`);
  (async () => {
    if (this.dane && !tlsReport) {
      let dane: DaneRoute;
      try {
        dane = await daneRoute(this.dane, name, mxPort);
      } catch (err) {
        return defer(failures.daneResolver(name, (err as Error).message));
      }
      if (dane.kind === 'failed') {
        logPolicy(hmail, name, 'dane', `a lookup failed: ${dane.why}`);
        // Only a failed TLSA lookup says the domain asks for DANE; a failed MX or address lookup says nothing.
        if (/TLSA/.test(dane.why)) recordPolicyFailure({ type: 'tlsa', domain: name, strings: [], mxHost: [] }, 'dnssec-invalid', name, dane.why);
        return defer(failures.daneLookup(name, dane.why));
      }
      if (dane.kind === 'dane') {
        const hosts = await this.mtaStsForHostsWithoutDane(hmail, name, dane);
        if (!Array.isArray(hosts)) return defer(hosts);
        state.attempt.daneHosts = new Map(hosts.flatMap((host): [string, UsableHostTls][] => (host.tls.level === 'unusable' ? [] : [[host.name, host.tls]])));
        logPolicy(hmail, name, 'dane', `${describeRoute(dane)}${state.attempt.enforce ? '; MTA-STS enforce for the hosts DANE does not authenticate' : ''}`);
        return routeTo(daneExchanges(hosts, mxPort));
      }
      hmail.loginfo(`DANE ${name}: does not apply (${dane.why})`);
    }
    const decision = this.mtaSts && !tlsReport ? await this.mtaSts.policyFor(name) : null;
    if (decision) noteStsPolicy(stateOf(hmail), name, decision);
    state.attempt.enforce = decision?.mode === 'enforce';
    let exchanges: Mx[];
    try {
      exchanges = await lookupMx(name);
    } catch (err) {
      hmail.logwarn(`MX lookup for ${name} failed: ${(err as Error).message}`);
      if (state.attempt.enforce) return defer(failures.mxLookup(name, (err as Error).message));
      // Haraka's own lookup would resolve again, past the private-MX filter (a record that changed in
      // between could point into the tunnel): defer here instead.
      if (this.privateMx) return defer(failures.mxLookupRetry(name, (err as Error).message));
      // Let Haraka's own lookup produce its usual temp-fail or bounce for this DNS answer.
      return withDelivery(state, () => next());
    }
    if (exchanges.length === 0) {
      // As Haraka answers nowhere to deliver, without a second lookup that could answer otherwise.
      if (this.privateMx) return reply(constants.DENY, `Nowhere to deliver mail to for domain ${name}`);
      return withDelivery(state, () => next());
    }
    for (const mx of exchanges) mx.port = mxPort;
    const result = decision ? applyPolicy(hmail, name, exchanges, decision) : exchanges;
    if (!Array.isArray(result)) return defer(result);
    logPolicy(hmail, name, decision?.mode === 'enforce' ? 'mta-sts' : 'opportunistic', decision ? `MTA-STS ${decision.mode}` : 'no MTA-STS policy');
    if (!this.privateMx) return reply(constants.OK, result);
    // Resolved here, as Haraka would resolve them next (haraka-net-utils), to see where they point.
    return routeTo(await resolveMxHosts(result));
  })().catch((err: Error) => {
    // Fail closed: an unexpected error must not turn into a plaintext delivery.
    defer(failures.routing(name, err.message));
  });
}

/**
 * A deferral: names the reason Haraka logs ("Temp failing <file> for <n> seconds: <reason>") when this
 * plugin knows it better; retries at once, uncounted, a message whose STARTTLS just failed somewhere (the
 * next try reaches that host without TLS); and puts a flushed message back on its old schedule.
 */
export function explain_deferral(this: RoutePlugin, next: Next, hmail: HMail, params: { err?: unknown } = {}): void {
  const state = stateOf(hmail);
  const mx = state.attempt.mx;
  if (mx && String(params.err ?? '').includes(NO_STARTTLS)) recordSession(state, mx, { ok: false, type: 'starttls-not-supported' });
  const failure = explainAttempt(state, String(params.err ?? ''));
  if (failure) params.err = failure.text;
  if (owesImmediateRetry(state)) {
    hmail.num_failures = state.attempt.failuresBefore;
    params.err = `${String(params.err)}; trying again now, without TLS where STARTTLS failed`;
    return next(constants.DENYSOFT, '0');
  }
  const keep = state.keepSchedule;
  if (keep) {
    state.keepSchedule = undefined;
    hmail.num_failures = keep.failures;
    params.err = `${String(params.err)} (a flushed attempt: not counted, back on its schedule)`;
    return next(constants.DENYSOFT, String(Math.max(0, Math.ceil((keep.at - Date.now()) / 1000))));
  }
  next();
}

function explainAttempt(state: DeliveryState, reason: string): Failure | null {
  const level = tlsNow(state)?.level;
  const daneMx = level === 'dane' || level === 'encrypt' ? state.attempt.mx?.name : undefined;
  return explainFailure({ ...state.attempt, ...(daneMx ? { daneMx } : {}) }, reason, state.domain);
}

/** A bounce: none for a message deleted from the queue; otherwise each recipient's DSN fields (dsn.ts). */
export function describe_bounce(this: RoutePlugin, next: Next, hmail: HMail, err: (Error & { mx?: { exchange?: string; from_dns?: string } }) | undefined): void {
  if (deleted.has(hmail)) return next(constants.OK);
  try {
    describeRecipients(stateOf(hmail), err);
  } catch (error) {
    hmail.logerror(`describing the bounce failed: ${(error as Error).message}`);
  }
  next();
}

function describeRecipients(state: DeliveryState, err: (Error & { mx?: { exchange?: string; from_dns?: string } }) | undefined): void {
  const { hmail } = state;
  const reason = err?.message ?? String(err ?? '');
  const queuedAt = Number(hmail.todo?.queue_time ?? Date.now());
  const context = {
    domain: state.domain,
    reason,
    ...(state.attempt.started ? { attempts: state.attempt.failuresBefore + 1 } : {}),
    ageMs: Date.now() - queuedAt,
    remote: { ...(err?.mx?.from_dns ? { name: err.mx.from_dns } : {}), ...(err?.mx?.exchange ? { address: err.mx.exchange } : {}) },
    explained: explainAttempt(state, reason),
  };
  for (const rcpt of (hmail.todo?.rcpt_to ?? []) as RecipientDsn[]) Object.assign(rcpt, bounceFields(rcpt, context));
  hmail.loginfo(
    `bounce (${isExpiry(reason) ? 'retries exhausted' : 'permanent failure'}): ${(hmail.todo?.rcpt_to as RecipientDsn[] | undefined)?.map((rcpt) => rcpt.reason).join('; ')}`,
  );
}
