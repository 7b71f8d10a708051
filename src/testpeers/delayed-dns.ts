// A DNS relay on loopback for tests and benchmarks that need a slow reverse lookup: it passes every query
// to the loopback DNS server (dns-server.ts) and holds back the answers to PTR queries for `ptrDelayMs`
// (null: never answers them, as a lame reverse zone does), while everything else is answered at once.
// Haraka pointed at it (dns.servers) sees a never-seen client whose PTR lookup is slow.
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export interface DelayedDns {
  host: string;
  port: number;
  /** `host:port` as dns.servers takes it. */
  address: string;
  /** Where queries go: set before the first query (the test topology picks its DNS port first). */
  upstream: { host: string; port: number } | null;
  /** How long PTR answers are held back, in ms; null: never sent. Changeable at any time. */
  ptrDelayMs: number | null;
  /** PTR questions seen so far. */
  ptrQueries: number;
  close(): Promise<void>;
}

export async function startDelayedDns(host: string, options: { ptrDelayMs: number | null; upstream?: { host: string; port: number } }): Promise<DelayedDns> {
  const server = dgram.createSocket('udp4');
  const timers = new Set<NodeJS.Timeout>();
  const relays = new Set<dgram.Socket>();
  const relay: DelayedDns = {
    host,
    port: 0,
    address: '',
    upstream: options.upstream ?? null,
    ptrDelayMs: options.ptrDelayMs,
    ptrQueries: 0,
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of relays) socket.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('message', (query, client) => {
    let isPtr = false;
    try {
      isPtr = dnsPacket.decode(query).questions?.[0]?.type === 'PTR';
    } catch {
      return;
    }
    const upstream = relay.upstream;
    if (!upstream) return;
    if (isPtr) relay.ptrQueries += 1;
    const delay = isPtr ? relay.ptrDelayMs : 0;
    if (delay === null) return;
    // One socket per query: the upstream's answer comes back on it, whatever its id.
    const socket = dgram.createSocket('udp4');
    relays.add(socket);
    const done = () => {
      relays.delete(socket);
      socket.close();
    };
    socket.on('error', done);
    socket.once('message', (answer) => {
      done();
      const send = () => server.send(answer, client.port, client.address);
      if (delay <= 0) return send();
      const timer = setTimeout(() => {
        timers.delete(timer);
        send();
      }, delay);
      timers.add(timer);
    });
    socket.send(query, upstream.port, upstream.host);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.bind(0, host, () => resolve());
  });
  relay.port = server.address().port;
  relay.address = `${host}:${relay.port}`;
  return relay;
}
