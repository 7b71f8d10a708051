// Reads the certificate an SMTP server presents after STARTTLS (banner, EHLO, STARTTLS, handshake), as a
// client on the internet sees it; the chain is not verified (test rigs use test CAs).
import net from 'node:net';
import tls from 'node:tls';

export interface ServedCert {
  fingerprint256: string;
  subjectAltName: string;
  issuer: string;
}

export async function servedCertificate(host: string, port: number, timeoutMs = 10_000): Promise<ServedCert> {
  const socket = net.connect({ host, port });
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no answer from ${host}:${port} within ${timeoutMs} ms`)));
  let buffer = '';
  const waiters: ((line: string) => void)[] = [];
  const lines: string[] = [];
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString('latin1');
    for (let end = buffer.indexOf('\r\n'); end !== -1; end = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (/^\d{3} /.test(line)) {
        const waiter = waiters.shift();
        if (waiter) waiter(line);
        else lines.push(line);
      }
    }
  };
  socket.on('data', onData);
  const failed = new Promise<never>((_, reject) => socket.once('error', reject));
  const reply = () => Promise.race([failed, new Promise<string>((resolve) => (lines.length ? resolve(lines.shift()!) : waiters.push(resolve)))]);
  try {
    const banner = await reply();
    if (!banner.startsWith('220')) throw new Error(`banner: ${banner}`);
    socket.write('EHLO client.test\r\n');
    const ehlo = await reply();
    if (!ehlo.startsWith('250')) throw new Error(`EHLO: ${ehlo}`);
    socket.write('STARTTLS\r\n');
    const go = await reply();
    if (!go.startsWith('220')) throw new Error(`STARTTLS: ${go}`);
    socket.off('data', onData);
    const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'client.test' });
    await Promise.race([failed, new Promise<void>((resolve, reject) => (secure.once('secureConnect', resolve), secure.once('error', reject)))]);
    const cert = secure.getPeerX509Certificate();
    secure.destroy();
    if (!cert) throw new Error('no certificate presented');
    return { fingerprint256: cert.fingerprint256, subjectAltName: cert.subjectAltName ?? '', issuer: cert.issuer };
  } finally {
    socket.destroy();
  }
}
