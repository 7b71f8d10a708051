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
      return values.map((data) => ({ name, type: 'TXT', ttl, class: 'IN', data: [data] }));
    }
    default:
      return [];
  }
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
    const response = dnsPacket.encode({
      id: query.id,
      type: 'response',
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (answers.length === 0 && !nameExists(zone, question.name) ? 3 : 0),
      questions: [question],
      answers,
    });
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

