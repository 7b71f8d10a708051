// One machine-readable log line per edge decision, shared by every plugin that refuses a client at the edge
// (mailproxy-edge, mailproxy-limits) and read back by `mailproxy stats`.
//
//   [NOTICE] [<uuid>] [mailproxy-edge] mailproxy-decision time=2026-05-01T12:00:00.123Z action=refuse ip=203.0.113.9 check=dnsbl reason=zen.spamhaus.org code=554 score=3
//
// The part after Haraka's own prefix is logfmt (key=value, a value with a space, `=`, `"` or `\` in double
// quotes with `\"` `\\` `\r` `\n` escaped: the quoting Haraka's logger uses for its own key=value data).
// It starts with the fixed word `mailproxy-decision`, so a reader finds it behind any prefix (Haraka's
// `[LEVEL] [uuid] [plugin]`, journald's timestamp and unit, or none with `journalctl -o cat`), and carries
// its own `time`, since `journalctl -o cat` drops the journal's. Haraka's log format stays as it is: the
// `queue list --log` parser reads haraka-out's `[outbound]` lines, which these never look like.
//
// Fields: time, action (refuse: the client got `code` and the check's refusal; log: a check in `log` mode
// would have refused; store: a message kept while the backend is unreachable; drain: a kept message handed
// to the backend; hold: a kept message the backend refused or that expired, held for the operator; bounce:
// one returned to its sender instead, with a DSN, because SPF passed for the sender's domain; accept:
// a session that ended without an edge refusal, logged once at disconnect by mailproxy-edge, with `msgs` and, when no check applied to the client, `exempt=loopback|private|allow`),
// ip, then check, reason and code where they apply, then any extra field a check adds.
//
// A refusal by an edge check or a limit ends the client's session (or its chance to send), and marks it, so
// that the session gets no accept line; store_and_forward's refusals answer one recipient or message
// while the backend is away, in a session that goes on, and leave it unmarked (sessionRefusal).

export const DECISION_WORD = 'mailproxy-decision';

export type DecisionAction = 'refuse' | 'log' | 'accept' | 'store' | 'drain' | 'hold' | 'bounce';

export interface Decision {
  action: DecisionAction;
  ip: string;
  /** The check that decided (dnsbl, early_talker, helo; the limits' own names). */
  check?: string;
  /** Why, in a word or a list (the DNSBL zones that listed the client, `pregreet`, `not_fqdn`). */
  reason?: string;
  /** The SMTP reply code: the client's (refuse, store), the backend's (drain, hold). */
  code?: number;
  /** More fields a check adds (score, msgs): short tokens. */
  extra?: Record<string, string | number>;
}

export interface ParsedDecision {
  time: Date;
  action: DecisionAction;
  ip: string;
  check: string | null;
  reason: string | null;
  code: number | null;
  /** Every field of the line, as read. */
  fields: Record<string, string>;
}

/** Connection note set when a decision line that refuses the session was logged for the connection. */
export const REFUSED_NOTE = 'mailproxy_refused';

/** Checks whose refusals answer one recipient or message in a session that goes on. */
const MESSAGE_CHECKS: ReadonlySet<string> = new Set(['store_and_forward']);

/** A refusal of the session (edge checks, limits), not of one recipient or message in it. */
export function sessionRefusal(decision: { action: DecisionAction; check?: string | null }): boolean {
  return decision.action === 'refuse' && !MESSAGE_CHECKS.has(decision.check ?? '');
}

const NEEDS_QUOTING = /(^$|[\s="\\])/;
const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\r': '\\r', '\n': '\\n' };
const KEY = /^[a-z][a-z0-9_]*$/;
const ACTIONS: ReadonlySet<string> = new Set<DecisionAction>(['refuse', 'log', 'accept', 'store', 'drain', 'hold', 'bounce']);

function quote(value: string): string {
  if (!NEEDS_QUOTING.test(value)) return value;
  return `"${value.replace(/["\\\r\n]/g, (char) => ESCAPES[char] ?? char).replace(/[\t\v\f]/g, ' ')}"`;
}

/** The decision as the text after Haraka's prefix: `mailproxy-decision time=... action=... ip=...`. */
export function formatDecision(decision: Decision, now: Date = new Date()): string {
  const fields: [string, string | number | undefined][] = [
    ['time', now.toISOString()],
    ['action', decision.action],
    ['ip', decision.ip],
    ['check', decision.check],
    ['reason', decision.reason],
    ['code', decision.code],
    ...Object.entries(decision.extra ?? {}),
  ];
  const parts = [DECISION_WORD];
  for (const [key, value] of fields) {
    if (value === undefined) continue;
    if (!KEY.test(key)) throw new Error(`decision field name ${JSON.stringify(key)}: expected a lowercase word`);
    parts.push(`${key}=${quote(String(value))}`);
  }
  return parts.join(' ');
}

/** The logfmt pairs of `text` (`key=value` and `key="quoted value"`), in order; a malformed rest ends it. */
export function parseLogfmt(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  const pair = /\s*([A-Za-z_][A-Za-z0-9_.-]*)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))/y;
  let match: RegExpExecArray | null;
  while ((match = pair.exec(text)) !== null) {
    const [, key, quoted, bare] = match;
    fields[key as string] = quoted !== undefined ? quoted.replace(/\\(.)/g, (_, char: string) => ({ r: '\r', n: '\n' })[char] ?? char) : (bare ?? '');
  }
  return fields;
}

/** The decision in one log line (any prefix before the word), or null for every other line. */
export function parseDecisionLine(line: string): ParsedDecision | null {
  const at = line.indexOf(`${DECISION_WORD} `);
  if (at === -1 || (at > 0 && !/\s/.test(line[at - 1] ?? ''))) return null;
  const fields = parseLogfmt(line.slice(at + DECISION_WORD.length));
  const time = fields.time ? new Date(fields.time) : null;
  if (!time || Number.isNaN(time.getTime()) || !fields.action || !ACTIONS.has(fields.action) || !fields.ip) return null;
  const code = fields.code !== undefined && /^\d{3}$/.test(fields.code) ? Number(fields.code) : null;
  return {
    time,
    action: fields.action as DecisionAction,
    ip: fields.ip,
    check: fields.check ?? null,
    reason: fields.reason ?? null,
    code,
    fields,
  };
}

/** Where a decision is logged: a Haraka connection (its uuid goes in the prefix), or a plugin. */
export interface DecisionTarget {
  lognotice(...args: unknown[]): void;
  notes?: Record<string, unknown>;
}

/**
 * Logs the decision at NOTICE (shown at log_level info and notice) through `target`'s logger, with
 * `plugin` naming the origin in Haraka's prefix. A refusal of the session marks the connection
 * (REFUSED_NOTE), so the session is not counted again as accepted at its end.
 */
export function logDecision(target: DecisionTarget, plugin: unknown, decision: Decision, now: Date = new Date()): void {
  if (sessionRefusal(decision) && target.notes) target.notes[REFUSED_NOTE] = true;
  target.lognotice(plugin, formatDecision(decision, now));
}

/** True once a refusal was logged for this connection (by any plugin using logDecision). */
export function wasRefused(target: { notes?: Record<string, unknown> }): boolean {
  return target.notes?.[REFUSED_NOTE] === true;
}
