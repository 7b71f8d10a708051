// Which A records of a DNS list count as "listed": postscreen's `zone=127.0.0.[2..11]` in YAML form.
// An entry is an address (127.0.0.2), a CIDR (127.0.0.0/24) or a range (127.0.0.2-127.0.0.11), IPv4
// only: DNS lists answer with A records whatever the client's address family.

export interface AnswerRange {
  /** First and last address, as unsigned 32-bit numbers. */
  from: number;
  to: number;
}

const QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function ipv4ToNumber(ip: string): number | null {
  if (!QUAD.test(ip)) return null;
  return ip.split('.').reduce((sum, part) => sum * 256 + Number(part), 0);
}

/** `127.0.0.2`, `127.0.0.0/24` or `127.0.0.2-127.0.0.11`; null for anything else. */
export function parseAnswerRange(text: string): AnswerRange | null {
  const trimmed = text.trim();
  const range = /^([\d.]+)-([\d.]+)$/.exec(trimmed);
  if (range) {
    const from = ipv4ToNumber(range[1] as string);
    const to = ipv4ToNumber(range[2] as string);
    return from !== null && to !== null && from <= to ? { from, to } : null;
  }
  const cidr = /^([\d.]+)\/(\d{1,2})$/.exec(trimmed);
  if (cidr) {
    const base = ipv4ToNumber(cidr[1] as string);
    const bits = Number(cidr[2]);
    if (base === null || bits > 32) return null;
    const size = 2 ** (32 - bits);
    const from = base - (base % size);
    return { from, to: from + size - 1 };
  }
  const single = ipv4ToNumber(trimmed);
  return single === null ? null : { from: single, to: single };
}

/**
 * Answers that mean "query refused", never "listed": Spamhaus 127.255.255.252 (bad DQS key), .254
 * (asked through a public or unregistered resolver), .255 (too many queries); dnswl.org 127.0.0.255 (too
 * many queries). Counting them would refuse (or pass) everyone.
 */
const REFUSALS: AnswerRange[] = [parseAnswerRange('127.255.255.0/24'), parseAnswerRange('127.0.0.255')] as AnswerRange[];
const LOOPBACK_NET = parseAnswerRange('127.0.0.0/8') as AnswerRange;

function inRanges(value: number, ranges: readonly AnswerRange[]): boolean {
  return ranges.some((range) => value >= range.from && value <= range.to);
}

/** True for an answer that is a DNS list's "query refused" code (logged, never counted). */
export function isRefusalAnswer(answer: string): boolean {
  const value = ipv4ToNumber(answer);
  return value !== null && inRanges(value, REFUSALS);
}

/**
 * True when the answer counts as a listing: inside the entry's ranges, or with none given, anywhere in
 * 127.0.0.0/8 (RFC 5782 §2.1) except the refusal codes.
 */
export function answerCounts(answer: string, ranges: readonly AnswerRange[]): boolean {
  const value = ipv4ToNumber(answer);
  if (value === null || inRanges(value, REFUSALS)) return false;
  return ranges.length === 0 ? inRanges(value, [LOOPBACK_NET]) : inRanges(value, ranges);
}
