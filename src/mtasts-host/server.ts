// The policy service's HTTPS listeners (node:https): the one place that touches sockets. It answers what
// route.ts decides, holds slow clients to named timeouts, speaks TLS 1.2 or newer only, and swaps its
// certificate in place: handshakes already under way finish with the old pair, every later one gets the
// new pair, so a renewal never costs a failed handshake and never a restart.
import https from 'node:https';
import type { Server } from 'node:https';
import tls from 'node:tls';
import { formatHostPort, type HostPort } from '../config/net';
import { answer } from './route';

export interface Timeouts {
  /** From the TCP connection to the end of the TLS handshake (Node's default is 120 s). */
  handshakeMs: number;
  /** From the connection (or the previous response) to the end of the request's headers: slow-header clients. */
  headersMs: number;
  /** The whole request, headers and any body: slow-body clients. */
  requestMs: number;
  /** An idle keep-alive connection between requests. */
  keepAliveMs: number;
  /**
   * How often Node checks headersMs and requestMs; its default (30 s) would let a client that trickles its
   * headers hold the connection for up to 30 s more.
   */
  checkIntervalMs: number;
}

// A sender fetches one small file: a second is plenty for each step on any link a mail server has. These
// leave room for a slow resolver-side network while keeping a connection-holding client to seconds.
export const TIMEOUTS: Timeouts = { handshakeMs: 10_000, headersMs: 10_000, requestMs: 15_000, keepAliveMs: 5_000, checkIntervalMs: 1_000 };
/** Connections one listener holds at once: far above what senders' policy fetches need, far below what exhausts the memory cap. */
export const MAX_CONNECTIONS = 512;
/** Largest request head taken: a policy fetch sends a few hundred bytes. */
export const MAX_HEADER_BYTES = 8 * 1024;

/** TLS 1.2 or newer (RFC 8461 §3.3 requires a valid certificate; RFC 8996 retired 1.0 and 1.1). */
const TLS_SETTINGS = { minVersion: 'TLSv1.2' } as const;

export interface CertificatePair {
  key: string;
  cert: string;
}

export interface PolicyContent {
  /** The names answered for (lower-case): `mta-sts.<domain>` of every domain. */
  hosts: string[];
  /** The policy body. */
  text: string;
}

export interface PolicyServer {
  /** The addresses listened on (the port the system chose where 0 was asked). */
  addresses: HostPort[];
  /** Requests from now on get this policy and these hosts. */
  setContent(content: PolicyContent): void;
  /** Handshakes from now on present this pair; throws, keeping the pair in use, when it does not load. */
  setCertificate(pair: CertificatePair): void;
  close(): Promise<void>;
}

export interface PolicyServerOptions {
  listen: HostPort[];
  content: PolicyContent;
  /** Null: handshakes fail until setCertificate is called (the service waits for a first deploy). */
  certificate: CertificatePair | null;
  timeouts?: Partial<Timeouts>;
}

function listen(server: Server, address: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EACCES' ? ' (a port under 1024 needs CAP_NET_BIND_SERVICE)' : err.code === 'EADDRNOTAVAIL' ? ' (not an address of this host)' : '';
      reject(new Error(`cannot listen on ${formatHostPort(address)}: ${err.message}${why}`));
    };
    server.once('error', failed);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', failed);
      const bound = server.address();
      resolve(typeof bound === 'object' && bound ? { host: address.host, port: bound.port } : address);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    // The policy is a few hundred bytes: nothing in flight is worth waiting for.
    server.closeAllConnections();
  });
}

export async function startPolicyServer(options: PolicyServerOptions): Promise<PolicyServer> {
  const timeouts = { ...TIMEOUTS, ...options.timeouts };
  let hosts = new Set(options.content.hosts);
  let text = options.content.text;
  const servers: Server[] = [];
  const make = () => {
    const server = https.createServer(
      {
        ...TLS_SETTINGS,
        ...(options.certificate ?? {}),
        handshakeTimeout: timeouts.handshakeMs,
        headersTimeout: timeouts.headersMs,
        requestTimeout: timeouts.requestMs,
        keepAliveTimeout: timeouts.keepAliveMs,
        connectionsCheckingInterval: timeouts.checkIntervalMs,
        maxHeaderSize: MAX_HEADER_BYTES,
      },
      (request, response) => {
        const reply = answer({ method: request.method, url: request.url, host: request.headers.host }, hosts, text);
        response.writeHead(reply.status, reply.headers).end(reply.body);
      },
    );
    server.maxConnections = MAX_CONNECTIONS;
    // A connection that completed its handshake and then says nothing is covered by headersMs; this also
    // ends one that stalls in the middle of reading a response.
    server.setTimeout(timeouts.requestMs);
    // Handshake failures of scanners and broken clients are theirs: nothing to log, nothing to keep.
    server.on('tlsClientError', (_err, socket) => socket.destroy());
    return server;
  };
  const addresses: HostPort[] = [];
  try {
    for (const address of options.listen) {
      const server = make();
      servers.push(server);
      addresses.push(await listen(server, address));
    }
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    throw err;
  }
  return {
    addresses,
    setContent(content) {
      hosts = new Set(content.hosts);
      text = content.text;
    },
    setCertificate(pair) {
      // Built once first, so that a pair that does not load (a key of another certificate) throws before
      // any listener changes.
      tls.createSecureContext({ ...TLS_SETTINGS, ...pair });
      for (const server of servers) server.setSecureContext({ ...TLS_SETTINGS, ...pair });
    },
    close: async () => {
      await Promise.all(servers.map(closeServer));
    },
  };
}
