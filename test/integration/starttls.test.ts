// haraka-in offers STARTTLS with the certificate the config names, and mail sent over it is forwarded.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { sendMessage } from '../../src/smtp/send';
import { useTopology } from '../helpers/topology';

function readReply(socket: net.Socket | tls.TLSSocket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (/^\d{3} .*\r\n$/m.test(text.split('\r\n').slice(-2).join('\r\n'))) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
  });
}

describe('STARTTLS on haraka-in', () => {
  const topology = useTopology({ instances: ['haraka-in'] });

  it('serves the configured certificate after STARTTLS', async () => {
    const t = topology();
    const socket = net.connect({ host: t.inbound.host, port: t.inbound.port });
    await readReply(socket);
    socket.write('EHLO client.test\r\n');
    expect(await readReply(socket)).toMatch(/^250[ -]STARTTLS\r$/m);
    socket.write('STARTTLS\r\n');
    expect(await readReply(socket)).toMatch(/^220 /);
    const secure = tls.connect({ socket, servername: t.config.hostname, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    const served = secure.getPeerX509Certificate();
    const configured = new X509Certificate(readFileSync(t.config.tls.cert));
    expect(served?.fingerprint256).toBe(configured.fingerprint256);
    expect(secure.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    // A second STARTTLS inside TLS is refused (RFC 3207), and the session goes on over TLS.
    secure.write('EHLO client.test\r\n');
    expect(await readReply(secure)).not.toMatch(/STARTTLS/);
    secure.write('STARTTLS\r\n');
    expect(await readReply(secure)).toMatch(/^503 5\.5\.1 /);
    secure.write('NOOP\r\n');
    expect(await readReply(secure)).toMatch(/^250 /);
    secure.destroy();
  });

  it('forwards a message received over STARTTLS', async () => {
    const t = topology();
    const result = await sendMessage({
      host: t.inbound.host,
      port: t.inbound.port,
      from: 'sender@example.net',
      to: ['alice@demo.test'],
      subject: 'over starttls',
      text: 'encrypted',
      starttls: true,
    });
    expect(result.accepted).toEqual(['alice@demo.test']);
    const received = (await t.backend!.waitForMessages(1)).find((m) => m.subject === 'over starttls');
    expect(received?.raw.toString('utf8')).toMatch(/with ESMTPS/);
  });
});
