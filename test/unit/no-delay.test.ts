// TCP_NODELAY on the sockets Haraka 3.3.4 opens (haraka-out to an MX) and accepts (both instances), on Haraka's
// real tls_socket.js and real loopback sockets. Whether Node set TCP_NODELAY is read from the socket's own
// state (net.Socket keeps it under Symbol(kSetNoDelay) and calls the handle's setNoDelay when it changes):
// without the fix every socket here reads false. The Haraka lines this relies on are pinned in
// outbound-haraka-pin.test.ts and smtp-haraka-pin.test.ts; the effect (no TcpExt DelayedACKs per message) is
// measured by `BENCH_OUTBOUND_ONLY=1 npm run bench` (docs/BENCHMARKS.md).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { installConnectNoDelay } from '../../src/plugins/haraka/patches/connect-no-delay';
import type { HarakaSocket } from '../../src/plugins/haraka/socket';
import * as smtpPlugin from '../../src/plugins/smtp/index';
import * as outboundPlugin from '../../src/plugins/outbound/index';

interface TlsSocketModule {
  connect(options: { host: string; port: number }): HarakaSocket & net.Socket & { targetsocket: net.Socket };
  createServer(cb: (socket: HarakaSocket & { targetsocket: net.Socket; destroy(): void }) => void): net.Server;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const tlsSocket = require('haraka/tls_socket') as TlsSocketModule;

function noDelayOf(socket: net.Socket): boolean {
  const symbol = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kSetNoDelay');
  if (!symbol) throw new Error('this Node keeps no kSetNoDelay on its sockets: read TCP_NODELAY another way');
  return (socket as unknown as Record<symbol, boolean>)[symbol] === true;
}

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

function fakePlugin(hooks: [string, string][]) {
  return {
    name: 'test',
    config: { get: (name: string) => (name === 'mailproxy-outbound.ini' ? { main: {}, backend: {}, local: {}, mta_sts: {} } : {}) },
    register_hook: (hook: string, method: string) => void hooks.push([hook, method]),
    loginfo: () => undefined,
    logwarn: () => undefined,
    logerror: (message: unknown) => {
      throw new Error(String(message));
    },
    logdebug: () => undefined,
  };
}

describe('TCP_NODELAY on Haraka sockets', () => {
  it('reads false on a socket nobody set it on (the check below can fail)', async () => {
    const port = await listen(net.createServer((socket) => socket.destroy()));
    const socket = net.connect({ host: '127.0.0.1', port });
    closers.push(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    expect(noDelayOf(socket)).toBe(false);
  });

  it("mailproxy-outbound's register makes every tls_socket.connect (each MX connection) set it", async () => {
    const hooks: [string, string][] = [];
    // Haraka copies a plugin's exports onto its plugin object.
    outboundPlugin.register.call({ ...fakePlugin(hooks), ...outboundPlugin } as never);
    const port = await listen(net.createServer(() => undefined));
    const socket = tlsSocket.connect({ host: '127.0.0.1', port });
    closers.push(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    expect(noDelayOf(socket.targetsocket)).toBe(true);
    expect(installConnectNoDelay()).toBe(true); // a second install keeps the one wrapper
  });

  it("mailproxy-smtp's connect_init hook sets it on the socket Haraka accepted (its wrapper's setNoDelay does nothing)", async () => {
    const hooks: [string, string][] = [];
    smtpPlugin.register.call(fakePlugin(hooks) as never);
    const method = hooks.find(([hook]) => hook === 'connect_init')?.[1];
    expect(method).toBe('no_delay');
    const accepted = new Promise<HarakaSocket & { targetsocket: net.Socket; destroy(): void }>((resolve) => {
      const server = tlsSocket.createServer(resolve);
      closers.push(() => server.close());
      void listen(server).then((port) => {
        const client = net.connect({ host: '127.0.0.1', port });
        closers.push(() => client.destroy());
      });
    });
    const socket = await accepted;
    closers.push(() => socket.destroy());
    socket.setNoDelay?.(true);
    expect(noDelayOf(socket.targetsocket)).toBe(false);
    let nexted = false;
    (smtpPlugin as unknown as Record<string, (next: () => void, connection: unknown) => void>)[method!]!.call(fakePlugin([]), () => (nexted = true), { client: socket });
    expect(nexted).toBe(true);
    expect(noDelayOf(socket.targetsocket)).toBe(true);
  });
});
