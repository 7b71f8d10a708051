// SMTP smuggling with a dot and bare CRs (found by test/e2e/smuggling.test.ts): a DATA line of a dot, two or
// more CRs and LF (`.\r\r\n`) is content to Haraka, whose end of data is exactly `.\r\n`, but Postfix strips
// every trailing CR from a line before it looks for the dot (smtp_get), so to the backend it ends the
// message, and whatever the client wrote after it (MAIL, RCPT, DATA, a second message) reaches Postfix as
// commands of the forwarder's trusted session. Haraka refuses a bare LF in DATA with 451 and closes; such a
// line is refused the same way, before it is stored. RFC 5321 §2.3.8: CR only as part of CRLF.

/** `.` + two or more CR + LF: the end of data to a server that strips trailing CRs, content to Haraka. */
export function isDotCrLine(line: unknown): boolean {
  if (!Buffer.isBuffer(line) || line.length < 4 || line[0] !== 0x2e || line[line.length - 1] !== 0x0a) return false;
  for (let i = 1; i < line.length - 1; i++) if (line[i] !== 0x0d) return false;
  return true;
}

export const DOT_CR_REPLY = '4.6.0 Bare CR in a line of a dot (an ambiguous end of data); see RFC 5321 section 2.3.8';
