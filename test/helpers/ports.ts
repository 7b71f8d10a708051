import net from 'node:net';

/** A port that was free on `host` a moment ago (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function freePorts<K extends string>(names: readonly K[], host = '127.0.0.1'): Promise<Record<K, number>> {
  const out = {} as Record<K, number>;
  const seen = new Set<number>();
  for (const name of names) {
    let port = await freePort(host);
    while (seen.has(port)) port = await freePort(host);
    seen.add(port);
    out[name] = port;
  }
  return out;
}
