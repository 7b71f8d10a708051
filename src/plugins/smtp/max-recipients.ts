// The recipient limit of one message: connection.ini [max] recipients, rendered from inbound.max_recipients
// for haraka-in only. Haraka 3.3.4 has no such limit of its own, and haraka-plugin-limit's counts the whole
// connection (not the transaction) and loads Redis support. The recipient past the limit gets 452 4.5.3
// (RFC 5321 §4.5.3.1.10: the sender delivers the rest in another transaction); mailproxy-smtp runs before
// mailproxy-forward, so the backend never sees that recipient.

/** The limit in connection.ini's [max] section; 0 (none) when it is missing or not a positive integer. */
export function recipientLimit(max: { recipients?: unknown } | undefined): number {
  const value = Number(max?.recipients);
  return Number.isInteger(value) && value > 0 ? value : 0;
}

/** Haraka pushes the recipient onto rcpt_to before the rcpt hooks run (and pops refused ones): the
 * recipients accepted so far are all but the last. */
export function overRecipientLimit(rcptToLength: number, limit: number): boolean {
  return limit > 0 && rcptToLength - 1 >= limit;
}
