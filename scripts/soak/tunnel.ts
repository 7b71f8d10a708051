// The soak's stand-in for the WireGuard tunnel between haraka-in and the backend: a TCP proxy that a fault
// can cut (every connection reset) or blackhole (new connections go nowhere).
import net from 'node:net';

/** A TCP proxy standing for the WireGuard tunnel: it can drop every connection, or blackhole new ones. */
export class Tunnel {
  private pairs = new Set<[net.Socket, net.Socket]>();
  private server: net.Server;
  blackhole = false;

  private constructor(server: net.Server) {
    this.server = server;
  }

  static async start(listenHost: string, listenPort: number, targetHost: string, targetPort: () => number): Promise<Tunnel> {
    const server = net.createServer();
    const tunnel = new Tunnel(server);
    server.on('connection', (client) => {
      client.on('error', () => undefined);
      if (tunnel.blackhole) {
        // Packets go nowhere: the forwarder's connect/banner timeout must answer its client.
        setTimeout(() => client.destroy(), 8000).unref();
        return;
      }
      const upstream = net.connect({ host: targetHost, port: targetPort() });
      upstream.on('error', () => client.destroy());
      const pair: [net.Socket, net.Socket] = [client, upstream];
      tunnel.pairs.add(pair);
      const end = () => {
        tunnel.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end);
      upstream.on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, listenHost, () => resolve());
    });
    return tunnel;
  }

  /** Every connection through the tunnel is reset at once. */
  drop(): number {
    const count = this.pairs.size;
    for (const [client, upstream] of [...this.pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
    return count;
  }

  close(): Promise<void> {
    this.drop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
