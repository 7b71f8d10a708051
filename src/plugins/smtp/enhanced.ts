// RFC 3463 enhanced status codes for the refusals Haraka words itself ("I cannot deliver mail for ...",
// "timeout", "Unrecognized command"): senders and their logs classify a refusal by it. Replies that
// already carry one (the backend's, a plugin's DSN) keep theirs.
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}(\s|$)/;

/** [reply code, text pattern, enhanced code]: the first row that matches wins. */
const RULES: [number | null, RegExp | null, string][] = [
  [550, /cannot deliver mail for|relay/i, '5.7.1'],
  [550, /authentication required/i, '5.7.0'],
  [554, /not welcome/i, '5.7.1'],
  [554, /no valid recipients/i, '5.5.1'],
  [421, /timeout/i, '4.4.2'],
  [421, null, '4.3.2'],
  [451, /bare line-feed/i, '4.6.0'],
  [500, null, '5.5.2'],
  [501, null, '5.5.4'],
  [503, null, '5.5.1'],
  [504, null, '5.5.4'],
  [521, /too long/i, '5.5.2'],
  [555, null, '5.5.4'],
  [null, null, ''],
];

/** The enhanced code to put before the first line of a refusal, or null when it has one or needs none. */
export function enhancedStatusFor(code: number, firstLine: string): string | null {
  if (code < 400 || code > 599 || ENHANCED.test(firstLine)) return null;
  for (const [ruleCode, pattern, enhanced] of RULES) {
    if (ruleCode !== null && ruleCode !== code) continue;
    if (pattern && !pattern.test(firstLine)) continue;
    if (enhanced) return enhanced;
  }
  return `${Math.floor(code / 100)}.0.0`;
}

/** The message with the enhanced code in front of its first line (Haraka takes a string or a list). */
export function withEnhancedStatus(code: number, msg: unknown): unknown {
  if (typeof msg !== 'string' && !Array.isArray(msg)) return msg;
  const lines = (Array.isArray(msg) ? msg.map(String) : msg.split('\n')).filter((line) => /\S/.test(line));
  const enhanced = enhancedStatusFor(code, lines[0] ?? '');
  if (!enhanced) return msg;
  return [`${enhanced} ${lines[0] ?? ''}`.trimEnd(), ...lines.slice(1)];
}
