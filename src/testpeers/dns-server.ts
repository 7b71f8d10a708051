// A small authoritative DNS server on loopback for the demo, tests and benchmarks, so that nothing ever
// resolves through the system resolver. Answers A, AAAA, MX, TXT and PTR from an in-memory zone.
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export interface Zone {
  A?: Record<string, string[]>;
  AAAA?: Record<string, string[]>;
  MX?: Record<string, { exchange: string; preference: number }[]>;
  TXT?: Record<string, string[]>;
  PTR?: Record<string, string[]>;
  /** PTR names written to the wire label by label, byte for byte, after the PTR answers above: names no
   * string can carry through dns-packet (CR, LF, NUL, spaces, a dot inside a label, bytes that are not
   * UTF-8), and malformed ones on purpose (a label over 63 octets, a name over 255). Keyed like PTR. */
  RAW_PTR?: Record<string, Buffer[][]>;
}

export interface DnsServer {
  host: string;
  port: number;
  /** `host:port` in the form node's dns.setServers and the config's dns.servers take. */
  address: string;
  zone: Zone;
  queries: { name: string; type: string }[];
  close(): Promise<void>;
}

// A character-string holds at most 255 octets (RFC 1035 §3.3): a longer TXT value (an SPF record with many
// terms) goes out as several strings of one record, as DNS providers publish it.
function characterStrings(text: string): string[] {
  const chunks: string[] = [];
  for (let at = 0; at < text.length; at += 255) chunks.push(text.slice(at, at + 255));
  return chunks.length ? chunks : [''];
}

function lower(record: Record<string, unknown> | undefined, name: string): unknown {
  if (!record) return undefined;
  const key = Object.keys(record).find((candidate) => candidate.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : record[key];
}

function answersFor(zone: Zone, question: dnsPacket.Question): dnsPacket.Answer[] {
  const { name, type } = question;
  const ttl = 60;
  switch (type) {
    case 'A':
    case 'AAAA':
    case 'PTR': {
      const values = (lower(zone[type], name) as string[] | undefined) ?? [];
      return values.map((data) => ({ name, type, ttl, class: 'IN', data }) as dnsPacket.Answer);
    }
    case 'MX': {
      const values = (lower(zone.MX, name) as { exchange: string; preference: number }[] | undefined) ?? [];
      return values.map((data) => ({ name, type: 'MX', ttl, class: 'IN', data }));
    }
    case 'TXT': {
      const values = (lower(zone.TXT, name) as string[] | undefined) ?? [];
      return values.map((data) => ({ name, type: 'TXT', ttl, class: 'IN', data: characterStrings(data) }));
    }
    default:
      return [];
  }
}

/** A name in DNS wire format from raw labels, no compression, no checks (RFC 1035 §3.1 allows any octet in a label). */
export function rawWireName(labels: Buffer[]): Buffer {
  return Buffer.concat([...labels.flatMap((label) => [Buffer.from([label.length & 0xff]), label]), Buffer.from([0])]);
}

/** PTR records for RAW_PTR names: owner name a pointer to the question (offset 12), RDATA the raw name. */
function rawPtrRecords(zone: Zone, question: dnsPacket.Question): Buffer[] {
  if (question.type !== 'PTR') return [];
  const names = (lower(zone.RAW_PTR, question.name) as Buffer[][] | undefined) ?? [];
  return names.map((labels) => {
    const rdata = rawWireName(labels);
    const record = Buffer.alloc(12);
    record.writeUInt16BE(0xc00c, 0);
    record.writeUInt16BE(12, 2); // PTR
    record.writeUInt16BE(1, 4); // IN
    record.writeUInt32BE(60, 6);
    record.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([record, rdata]);
  });
}

/** Length of the question section that starts at offset 12 (one question). */
function questionLength(packet: Buffer): number {
  let offset = 12;
  while (offset < packet.length && packet[offset] !== 0) {
    if (((packet[offset] as number) & 0xc0) === 0xc0) return offset + 2 + 4 - 12;
    offset += (packet[offset] as number) + 1;
  }
  return offset + 1 + 4 - 12;
}

/**
 * The response with the question section exactly as asked: dns-packet re-encodes a name from its text, so
 * a label holding a dot (`a\.b` asked by a resolver) would come back as two labels, and the resolver
 * drops an answer whose question differs from its own (it then times out instead of seeing NXDOMAIN).
 */
function withQuestionAsAsked(query: Buffer, response: Buffer): Buffer {
  const asked = query.subarray(12, 12 + questionLength(query));
  const answered = questionLength(response);
  if (asked.equals(response.subarray(12, 12 + answered))) return response;
  return Buffer.concat([response.subarray(0, 12), asked, response.subarray(12 + answered)]);
}

function nameExists(zone: Zone, name: string): boolean {
  return Object.values(zone).some((record) => lower(record as Record<string, unknown>, name) !== undefined);
}

export async function startDnsServer(zone: Zone, host = '127.0.0.1', port = 0): Promise<DnsServer> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const queries: { name: string; type: string }[] = [];
  socket.on('message', (message, remote) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    queries.push({ name: question.name, type: question.type });
    const answers = answersFor(zone, question);
    const raw = rawPtrRecords(zone, question);
    let response = dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (answers.length + raw.length === 0 && !nameExists(zone, question.name) ? 3 : 0),
      questions: [question],
      answers,
    });
    if (raw.length > 0) {
      response = Buffer.concat([response, ...raw]);
      response.writeUInt16BE(answers.length + raw.length, 6); // ANCOUNT
    }
    response = withQuestionAsAsked(message, response);
    socket.send(response, remote.port, remote.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => resolve());
  });
  const bound = socket.address();
  return {
    host,
    port: bound.port,
    address: host.includes(':') ? `[${host}]:${bound.port}` : `${host}:${bound.port}`,
    zone,
    queries,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
