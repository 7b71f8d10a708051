// Which A records of a DNS list count as "listed": postscreen's `zone=127.0.0.[2..11]` in YAML form.
// An entry is an address (127.0.0.2), a CIDR (127.0.0.0/24) or a range (127.0.0.2-127.0.0.11), IPv4
// only: DNS lists answer with A records whatever the client's address family. The ranges are parsed in
// ../../config/net.ts, where the config's schema checks them too.
import { ipv4ToNumber, parseAnswerRange, type AnswerRange } from '../../config/net';

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
