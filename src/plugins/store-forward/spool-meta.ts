// What the store-and-forward spool records about each message, and its ids. Pure: no I/O.
//
// An id is `<ms since the epoch, 14 digits>-<per-process sequence, 6 digits>-<8 random hex digits>`, e.g.
// `01767225600000-000042-9f86d081`: ids sort by time as strings (oldest first), the sequence orders ids
// made in the same millisecond by one process, and the random part keeps ids unique across restarts (a
// restart within the same millisecond, or a clock stepped back, cannot reuse one).
import { randomBytes } from 'node:crypto';

export interface ClientTls {
  enabled: boolean;
  cipher: string | null;
  version: string | null;
}

/** The client that handed the message to haraka-in: replayed to the backend with XCLIENT when drained. */
export interface ClientIdentity {
  address: string;
  port: number;
  /** The verified (forward-confirmed) reverse DNS name, or null. */
  rdnsName: string | null;
  helo: string | null;
  /** SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA... as the Received header would say. */
  proto: string;
  tls: ClientTls;
}

export interface Envelope {
  mailFrom: string;
  /** The recipients still to deliver (narrowed by recordAttempt after a partial delivery). */
  rcptTo: string[];
}

/** What XCLIENT passes besides the address and HELO, and the MAIL FROM parameters to send again. */
export interface Replay {
  /** XCLIENT NAME: the verified name, or [UNAVAILABLE] / [TEMPUNAVAIL]. */
  xclientName: string;
  esmtp: boolean;
  login: string | null;
  destAddr: string;
  destPort: number;
  mailParams: string[];
}

export interface HeldNote {
  reason: string;
  at: number;
}

export interface StoredMeta {
  format: 1;
  id: string;
  /** When haraka-in accepted the message (ms since the epoch). */
  receivedAt: number;
  /** Bytes of the raw message. */
  size: number;
  envelope: Envelope;
  client: ClientIdentity;
  attempts: number;
  lastAttemptAt: number | null;
  /** The backend's reply to the last attempt, as one line. */
  lastReply: string | null;
  /** No delivery before this time; null: as soon as the backend answers. */
  nextAttemptAt: number | null;
  /** Set while the message is held (it then lives in held/, not ready/). */
  held: HeldNote | null;
  /**
   * When the operator last released it from held/ (ms since the epoch); absent if never. Its lifetime
   * (max_age_days) then counts from here, as Postfix's held mail "becomes subject to expiration after it
   * is released": a message held because it expired would otherwise expire again at once.
   */
  releasedAt?: number;
  /** Absent in a meta written without it: the drain then replays what ClientIdentity holds. */
  replay?: Replay;
}

const ID = /^(\d{14})-\d{6}-[0-9a-f]{8}$/;
let sequence = 0;

export function newId(now: number): string {
  sequence = (sequence + 1) % 1_000_000;
  return `${String(Math.max(0, Math.floor(now))).padStart(14, '0')}-${String(sequence).padStart(6, '0')}-${randomBytes(4).toString('hex')}`;
}

/** Whether `id` has the spool's id form (so it can name a file: no separators, no dots). */
export function isId(id: string): boolean {
  return ID.test(id);
}

/** The time an id was made at (ms since the epoch), or null for a string that is not an id. */
export function idTime(id: string): number | null {
  const match = ID.exec(id);
  return match ? Number(match[1]) : null;
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isNullable<T>(value: unknown, check: (inner: unknown) => inner is T): value is T | null {
  return value === null || check(value);
}

function isClient(value: unknown): value is ClientIdentity {
  const client = value as Partial<ClientIdentity> | null;
  const tls = client?.tls as Partial<ClientTls> | undefined;
  return (
    isString(client?.address) &&
    isTime(client.port) &&
    isNullable(client.rdnsName, isString) &&
    isNullable(client.helo, isString) &&
    isString(client.proto) &&
    typeof tls?.enabled === 'boolean' &&
    isNullable(tls.cipher, isString) &&
    isNullable(tls.version, isString)
  );
}

function isHeld(value: unknown): value is HeldNote {
  const held = value as Partial<HeldNote> | null;
  return isString(held?.reason) && isTime(held.at);
}

/** The meta in a meta file's text, or null when it is not one (torn, edited, another format). */
export function parseMeta(text: string): StoredMeta | null {
  let value: Partial<StoredMeta> | null;
  try {
    value = JSON.parse(text) as Partial<StoredMeta> | null;
  } catch {
    return null;
  }
  const envelope = value?.envelope as Partial<Envelope> | undefined;
  const ok =
    value?.format === 1 &&
    isString(value.id) &&
    isId(value.id) &&
    isTime(value.receivedAt) &&
    isTime(value.size) &&
    isString(envelope?.mailFrom) &&
    Array.isArray(envelope.rcptTo) &&
    envelope.rcptTo.every(isString) &&
    isClient(value.client) &&
    isTime(value.attempts) &&
    isNullable(value.lastAttemptAt, isTime) &&
    isNullable(value.lastReply, isString) &&
    isNullable(value.nextAttemptAt, isTime) &&
    isNullable(value.held, isHeld) &&
    (value.releasedAt === undefined || isTime(value.releasedAt));
  return ok ? (value as StoredMeta) : null;
}

/** The meta of a held message released at `now`: back to ready, tried as soon as the backend answers. */
export function releasedMeta(meta: StoredMeta, now: number): StoredMeta {
  return { ...meta, held: null, nextAttemptAt: null, releasedAt: now };
}

export function formatMeta(meta: StoredMeta): string {
  return `${JSON.stringify(meta, null, 1)}\n`;
}
