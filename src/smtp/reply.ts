// SMTP replies, read the one way (after Postfix's smtp_chat_resp): a line ends at LF (a CR before it is
// dropped), `NNN-` continues a reply, any other line that starts with three digits ends it, and a line
// that does not start with three digits is garbage, which each reader treats by its own policy. The parser
// is pure and incremental: it is fed bytes as they come and hands back the replies they complete.

export interface Reply {
  code: number;
  /** Every line as received, code included, e.g. ['250-mx.example.net', '250 STARTTLS']. */
  lines: string[];
  /** The lines' text without the codes, joined with '\n' (set by readers that promise it). */
  text?: string;
}

/** What a line that does not start with three digits does: ends the reply with code 0 (Postfix with
 * pipelining), is kept in the reply being read, or is a fault (and so is a line with a CR inside). */
export type Garbage = 'end' | 'keep' | 'fault';

export interface ParserOptions {
  garbage?: Garbage;
  /** Bytes of an unfinished line (checked once a chunk is read). */
  maxLine?: number;
  /** Lines in one reply (checked as each line is read). */
  maxLines?: number;
  /** Bytes of one unfinished reply: its lines so far and the unfinished line (checked once a chunk is read). */
  maxBytes?: number;
}

export type ParseFault = { kind: 'malformed'; line: string } | { kind: 'line too long' } | { kind: 'too many lines' } | { kind: 'reply too long' };

export interface Parsed {
  /** The replies completed, in order (those before a fault included). */
  replies: Reply[];
  /** Why reading stopped; every later feed reports it again. */
  fault: ParseFault | null;
}

const LINE = /^(\d{3})([ -]?)/;

/** A line's text without its code: what follows `NNN ` or `NNN-` (or `NNN` directly). */
export function lineText(line: string): string {
  const match = LINE.exec(line);
  if (!match) return line.slice(4);
  return line.slice(match[0].length);
}

/** The text of every line without the codes, joined with '\n'. */
export function replyText(reply: Pick<Reply, 'lines'>): string {
  return reply.lines.map(lineText).join('\n');
}

/** Whether the EHLO reply names the extension (its first line is the greeting). */
export function hasExtension(ehlo: Pick<Reply, 'lines'>, name: string): boolean {
  return ehlo.lines.slice(1).some((line) => line.slice(4).trim().toUpperCase().split(/\s+/)[0] === name);
}

export class ReplyParser {
  private buffer = '';
  private lines: string[] = [];
  private bytes = 0;
  private fault: ParseFault | null = null;
  private readonly garbage: Garbage;

  constructor(private readonly options: ParserOptions = {}) {
    this.garbage = options.garbage ?? 'keep';
  }

  /** Reads a chunk (bytes, or a string of latin1 characters: one character a byte). */
  feed(chunk: Buffer | string): Parsed {
    const replies: Reply[] = [];
    if (this.fault) return { replies, fault: this.fault };
    this.buffer += typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    for (;;) {
      const end = this.buffer.indexOf('\n');
      if (end === -1) break;
      const line = this.buffer.slice(0, end).replace(/\r$/, '');
      this.buffer = this.buffer.slice(end + 1);
      const match = LINE.exec(line);
      // As the forwarder always read them: a CR inside a line is no more a reply line than garbage is.
      if (this.garbage === 'fault' && (!match || line.includes('\r'))) return this.stop(replies, { kind: 'malformed', line });
      this.lines.push(line);
      this.bytes += line.length;
      if (this.options.maxLines !== undefined && this.lines.length > this.options.maxLines) return this.stop(replies, { kind: 'too many lines' });
      if (match ? match[2] === '-' : this.garbage === 'keep') continue;
      replies.push({ code: match ? Number(match[1]) : 0, lines: this.lines });
      this.lines = [];
      this.bytes = 0;
    }
    if (this.options.maxLine !== undefined && this.buffer.length > this.options.maxLine) return this.stop(replies, { kind: 'line too long' });
    if (this.options.maxBytes !== undefined && this.buffer.length + this.bytes > this.options.maxBytes) return this.stop(replies, { kind: 'reply too long' });
    return { replies, fault: null };
  }

  /** Forgets what was read and not yet a reply (the plaintext left behind at STARTTLS). */
  reset(): void {
    this.buffer = '';
    this.lines = [];
    this.bytes = 0;
  }

  private stop(replies: Reply[], fault: ParseFault): Parsed {
    this.fault = fault;
    return { replies, fault };
  }
}
