// A strict reader for the delivery status notifications haraka-out sends (RFC 3464 multipart/report), so
// that tests check what a mail client would see: header fields, the human-readable part, and the
// message/delivery-status fields per message and per recipient.

export interface MimePart {
  /** Header fields, names lower-cased, values unfolded. */
  headers: Map<string, string[]>;
  body: string;
}

export interface ParsedDsn extends MimePart {
  reportType: string | null;
  parts: MimePart[];
  /** The text/plain part (the first part of the report). */
  human: string;
  /** The per-message fields of the message/delivery-status part, names lower-cased. */
  perMessage: Map<string, string>;
  /** One map of fields per recipient. */
  recipients: Map<string, string>[];
}

function parseFields(block: string): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  const unfolded = block.replace(/\r\n(?=[ \t])/g, '');
  for (const line of unfolded.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`not a header field: ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    fields.set(name, [...(fields.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  return fields;
}

function parsePart(text: string): MimePart {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return { headers: parseFields(text), body: '' };
  return { headers: parseFields(text.slice(0, end)), body: text.slice(end + 4) };
}

function param(value: string, name: string): string | null {
  const match = new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, 'i').exec(value);
  return match ? (match[1] ?? match[2] ?? null) : null;
}

function one(fields: Map<string, string[]>, name: string): string | null {
  return fields.get(name)?.[0] ?? null;
}

function statusBlocks(body: string): Map<string, string>[] {
  return body
    .split(/\r\n(?:\r\n)+/)
    .filter((block) => block.trim() !== '')
    .map((block) => new Map([...parseFields(`${block.trim()}`)].map(([name, values]) => [name, values[0] ?? ''])));
}

export function parseDsn(raw: Buffer | string): ParsedDsn {
  const text = raw.toString();
  if (/(^|[^\r])\n/.test(text)) throw new Error('a bare LF in the DSN');
  const message = parsePart(text);
  const contentType = one(message.headers, 'content-type') ?? '';
  if (!/^multipart\/report\s*;/i.test(contentType)) throw new Error(`not a multipart/report: ${contentType}`);
  const boundary = param(contentType, 'boundary');
  if (!boundary) throw new Error('multipart/report without a boundary');
  const sections = message.body.split(`--${boundary}`);
  const closing = sections.findIndex((section) => section.startsWith('--'));
  if (closing === -1) throw new Error('the multipart/report is not closed');
  const parts = sections.slice(1, closing).map((section) => parsePart(section.replace(/^\r\n/, '').replace(/\r\n$/, '')));
  const typeOf = (part: MimePart) => (one(part.headers, 'content-type') ?? 'text/plain').split(';')[0]!.trim().toLowerCase();
  const human = parts[0];
  const status = parts.find((part) => typeOf(part) === 'message/delivery-status');
  if (!human || typeOf(human) !== 'text/plain') throw new Error('the first part is not text/plain');
  if (!status) throw new Error('no message/delivery-status part');
  const [perMessage, ...recipients] = statusBlocks(status.body);
  return {
    ...message,
    reportType: param(contentType, 'report-type'),
    parts,
    human: human.body,
    perMessage: perMessage ?? new Map(),
    recipients,
  };
}

/** The first value of a header field of the DSN itself. */
export function header(dsn: MimePart, name: string): string | null {
  return one(dsn.headers, name.toLowerCase());
}

/** A delivery-status field without its RFC 5322 comments, e.g. `Status: 5.1.1 (a note)` -> `5.1.1`. */
export function withoutComment(value: string | undefined): string | undefined {
  return value?.replace(/\s*\([^)]*\)\s*/g, ' ').trim();
}
