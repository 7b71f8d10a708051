// One message through an open SMTP session, command by command, keeping every reply.
import { dataPayload, message, type SmtpScript } from '../../src/smtp/script';

export async function sendVia(session: SmtpScript, rcpts: string[], subject: string) {
  const mail = await session.command('MAIL FROM:<sender@example.net>');
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
