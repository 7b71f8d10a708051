// The effectful edge of DANE: DNS queries to the local DNSSEC-validating resolver (unbound on 127.0.0.1),
// read raw so that the AD bit is seen (node:dns hides it). UDP with the DO bit and the AD bit set, and TCP
// when the answer is truncated. The resolver must be local: an AD bit is only as trustworthy as the path
// it travelled, and loopback is the one path no one else is on.
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { answerStatus, type DnssecAnswer } from './status';

export interface DnssecResolverOptions {
  host: string;
  port: number;
  /** Per query (UDP and TCP each). */
  timeoutMs?: number;
}

export type RecordType = 'MX' | 'A' | 'AAAA' | 'TLSA' | 'SOA';

export interface DnssecResolver {
  query(name: string, type: RecordType): Promise<DnssecAnswer>;
}

const DEFAULT_TIMEOUT_MS = 5000;

function queryPacket(name: string, type: RecordType): { id: number; bytes: Buffer } {
  const id = randomInt(65536);
  const bytes = dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK } as dnsPacket.Answer],
  });
  return { id, bytes };
}

function matches(response: dnsPacket.DecodedPacket, id: number, name: string, type: RecordType): boolean {
  const question = response.questions?.[0];
  const bare = (text: string) => text.toLowerCase().replace(/\.$/, '');
  return response.id === id && question?.type === type && bare(question.name) === bare(name);
}

function timeoutError(options: DnssecResolverOptions, over: string): Error {
  return new Error(`no answer from the DNSSEC resolver ${options.host}:${options.port} over ${over} in ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`);
}

/** resolve/reject in one callback that acts once, after `cleanup` (the socket, the timer). */
function settleOnce<T>(resolve: (value: T) => void, reject: (error: Error) => void, cleanup: () => void): (error: Error | null, value?: T) => void {
  let done = false;
  return (error, value) => {
    if (done) return;
    done = true;
    cleanup();
    if (error) reject(error);
    else resolve(value as T);
  };
}

/** Over a connected UDP socket: only the resolver's own datagrams arrive, and a closed port fails at once. */
function overUdp(options: DnssecResolverOptions, name: string, type: RecordType): Promise<dnsPacket.DecodedPacket> {
  const { id, bytes } = queryPacket(name, type);
  const socket = dgram.createSocket(net.isIPv6(options.host) ? 'udp6' : 'udp4');
  return new Promise<dnsPacket.DecodedPacket>((resolve, reject) => {
    const finish = settleOnce(resolve, reject, () => {
      clearTimeout(timer);
      socket.close();
    });
    const timer = setTimeout(() => finish(timeoutError(options, 'UDP')), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    socket.on('error', (error) => finish(error));
    socket.on('message', (message) => {
      let response: dnsPacket.DecodedPacket;
      try {
        response = dnsPacket.decode(message);
      } catch {
        return; // not an answer to us; keep waiting
      }
      if (matches(response, id, name, type)) finish(null, response);
    });
    socket.connect(options.port, options.host, () => socket.send(bytes, (error) => error && finish(error)));
  });
}

function overTcp(options: DnssecResolverOptions, name: string, type: RecordType): Promise<dnsPacket.DecodedPacket> {
  const { id, bytes } = queryPacket(name, type);
  return new Promise<dnsPacket.DecodedPacket>((resolve, reject) => {
    const socket = net.connect({ host: options.host, port: options.port });
    let received = Buffer.alloc(0);
    const finish = settleOnce(resolve, reject, () => {
      clearTimeout(timer);
      socket.destroy();
    });
    const timer = setTimeout(() => finish(timeoutError(options, 'TCP')), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`the DNSSEC resolver ${options.host}:${options.port} closed the TCP connection before answering`)));
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes])));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2 || received.length < 2 + received.readUInt16BE(0)) return;
      try {
        const response = dnsPacket.decode(received.subarray(2, 2 + received.readUInt16BE(0)));
        if (matches(response, id, name, type)) finish(null, response);
        else finish(new Error('the DNSSEC resolver answered another question over TCP'));
      } catch (error) {
        finish(error as Error);
      }
    });
  });
}

export function createDnssecResolver(options: DnssecResolverOptions): DnssecResolver {
  return {
    async query(name, type) {
      let response = await overUdp(options, name, type);
      if (response.flag_tc) response = await overTcp(options, name, type);
      return answerStatus(response, name, type);
    },
  };
}
