// `mailproxy send`: one test message through any SMTP server, with nodemailer's SMTP transport.
import nodemailer from 'nodemailer';

export interface SendOptions {
  host: string;
  port: number;
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** Source address to connect from (haraka-out only relays for its ACL). */
  localAddress?: string;
  heloName?: string;
  /** Use STARTTLS when offered (certificates are not verified: this is a test tool). */
  starttls?: boolean;
}

export interface SendResult {
  accepted: string[];
  rejected: string[];
  response: string;
}

export async function sendMessage(options: SendOptions): Promise<SendResult> {
  const transport = nodemailer.createTransport({
    host: options.host,
    port: options.port,
    secure: false,
    ignoreTLS: !options.starttls,
    tls: { rejectUnauthorized: false },
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    name: options.heloName ?? 'sender.mailproxy.test',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
  });
  try {
    const info = await transport.sendMail({
      from: options.from,
      to: options.to,
      subject: options.subject,
      text: options.text,
      envelope: { from: options.from, to: options.to },
    });
    return {
      accepted: info.accepted.map(String),
      rejected: info.rejected.map(String),
      response: info.response,
    };
  } finally {
    transport.close();
  }
}
