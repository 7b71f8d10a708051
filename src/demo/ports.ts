// Before the demo starts: is each of its fixed loopback ports free? A second `npm start` while one runs
// then says which port is taken and by which role, instead of a bare EADDRINUSE from deep inside.
import dgram from 'node:dgram';
import net from 'node:net';
import { DEMO_PORTS, LOOPBACK } from './topology';

export interface DemoPort {
  role: string;
  host: string;
  port: number;
  udp?: boolean;
}

export const DEMO_LISTENERS: DemoPort[] = [
  { role: 'haraka-in', host: LOOPBACK.inbound, port: DEMO_PORTS.inbound },
  { role: 'haraka-out', host: LOOPBACK.wireguard, port: DEMO_PORTS.outbound },
  { role: 'backend stand-in', host: LOOPBACK.backend, port: DEMO_PORTS.backend },
  { role: '"internet" MX', host: LOOPBACK.internet, port: DEMO_PORTS.internetMx },
  { role: 'DNS server', host: LOOPBACK.dns, port: DEMO_PORTS.dns, udp: true },
];

function canListen(host: string, port: number, udp = false): Promise<boolean> {
  if (udp) {
    return new Promise((resolve) => {
      const socket = dgram.createSocket('udp4');
      socket.once('error', () => resolve(false));
      socket.bind(port, host, () => socket.close(() => resolve(true)));
    });
  }
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** The demo listeners whose port is already taken. */
export async function takenDemoPorts(listeners: DemoPort[] = DEMO_LISTENERS): Promise<DemoPort[]> {
  const taken: DemoPort[] = [];
  for (const listener of listeners) if (!(await canListen(listener.host, listener.port, listener.udp))) taken.push(listener);
  return taken;
}
