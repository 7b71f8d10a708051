// One message through an open SMTP session, command by command, keeping every reply.
import { expect } from 'vitest';
import { LOOPBACK, type Topology } from '../../src/demo/topology';
import { dataPayload, message, openSession, type SmtpScript } from '../../src/smtp/script';

export async function sendVia(session: SmtpScript, rcpts: string[], subject: string, from = 'sender@example.net') {
  const mail = await session.command(`MAIL FROM:<${from}>`);
  const replies = [];
  for (const rcpt of rcpts) replies.push(await session.command(`RCPT TO:<${rcpt}>`));
  let final = null;
  if (replies.some((reply) => reply.code === 250)) {
    const data = await session.command('DATA');
    if (data.code === 354) {
      session.write(dataPayload(message(subject, 'body')));
      final = await session.reply();
    } else {
      final = data;
    }
  }
  return { mail, replies, final };
}

/** One message from the backend's address through haraka-out, as the backend relays it; expects 250. */
export async function relayOut(t: Topology, rcpt: string, subject: string, from = 'alice@demo.test'): Promise<void> {
  const session = await openSession(t.outbound.host, t.outbound.port, { localAddress: LOOPBACK.backend });
  try {
    const { replies, final } = await sendVia(session, [rcpt], subject, from);
    expect(replies[0]?.code).toBe(250);
    expect(final?.code).toBe(250);
  } finally {
    session.close();
  }
}
