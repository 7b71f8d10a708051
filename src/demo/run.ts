// `mailproxy demo` (`npm start`): the whole appliance on loopback with a built-in config, printing each
// message the backend stand-in and the "internet" MX receive, until Ctrl-C.
import path from 'node:path';
import libmime from 'libmime';
import type { Writable } from 'node:stream';
import { takenDemoPorts } from './ports';
import { DEMO_DOMAIN, DEMO_PORTS, INTERNET_DOMAIN, LOOPBACK, startTopology } from './topology';

/** Haraka's note at start that the native iconv module is absent: iconv-lite covers the charsets mail
 * uses, and the demo does not show the user a line they cannot act on. */
const ICONV_NOTE = /Using iconv-lite only/;
import type { ReceivedMessage } from '../testpeers/smtp-sink';

/** RFC 2047 encoded words (=?UTF-8?B?...?=) as the person wrote them; the raw text when they do not decode. */
export function decodedSubject(subject: string): string {
  try {
    return libmime.decodeWords(subject);
  } catch {
    return subject;
  }
}

function describe(where: string, message: ReceivedMessage): string {
  const xclient = Object.entries(message.xclientSent)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
  return [
    `--- ${where} received a message`,
    `    from ${message.remoteAddress}  MAIL FROM:<${message.mailFrom}>  RCPT TO:${message.rcptTo.map((rcpt) => `<${rcpt}>`).join(',')}`,
    `    XCLIENT: ${xclient || '(none)'}`,
    `    Subject: ${decodedSubject(message.subject)}`,
  ].join('\n');
}

export async function runDemo(io: { stdout: Writable; stderr: Writable }, stateDir = path.resolve('.demo'), signal?: AbortSignal): Promise<number> {
  const say = (text: string) => io.stdout.write(`${text}\n`);
  const verbose = process.env.MAILPROXY_DEMO_VERBOSE === '1';
  const taken = await takenDemoPorts();
  if (taken.length > 0) {
    for (const { role, host, port, udp } of taken) io.stderr.write(`mailproxy demo: ${host}:${port}${udp ? '/udp' : ''} (the ${role}) is already in use\n`);
    io.stderr.write('Is another demo running? Stop it (Ctrl-C in its terminal) and try again.\n');
    return 1;
  }
  const topology = await startTopology({
    stateDir,
    ports: DEMO_PORTS,
    backend: { onMessage: (message) => say(describe(`backend stand-in ${LOOPBACK.backend}:${DEMO_PORTS.backend}`, message)) },
    internet: { onMessage: (message) => say(describe(`internet MX ${LOOPBACK.internet}:${DEMO_PORTS.internetMx}`, message)) },
    ...(verbose ? { echo: (name: string, line: string) => void (ICONV_NOTE.test(line) || io.stderr.write(`[${name}] ${line}\n`)) } : {}),
  });
  const inbound = `${topology.inbound.host}:${topology.inbound.port}`;
  const outbound = `${topology.outbound.host}:${topology.outbound.port}`;
  say(`mailproxy demo is running (config: ${topology.configPath}, rendered instances: ${topology.instancesDir})
  haraka-in   ${inbound}   public MX for ${DEMO_DOMAIN}, forwards to the backend stand-in ${LOOPBACK.backend}:${DEMO_PORTS.backend}
  haraka-out  ${outbound}   relays for ${LOOPBACK.backend} only, delivers by MX (DNS on ${LOOPBACK.dns}:${DEMO_PORTS.dns}) to ${LOOPBACK.internet}:${DEMO_PORTS.internetMx}

Send a message in (internet -> haraka-in -> backend):
  swaks --server ${inbound} --from someone@${INTERNET_DOMAIN} --to alice@${DEMO_DOMAIN}
  node bin/mailproxy.js send --server ${inbound} --from someone@${INTERNET_DOMAIN} --to alice@${DEMO_DOMAIN}
Send a message out (backend -> haraka-out -> internet):
  swaks --server ${outbound} --local-interface ${LOOPBACK.backend} --from alice@${DEMO_DOMAIN} --to bob@${INTERNET_DOMAIN}
  node bin/mailproxy.js send --server ${outbound} --local-address ${LOOPBACK.backend} --from alice@${DEMO_DOMAIN} --to bob@${INTERNET_DOMAIN}
Press Ctrl-C to stop (MAILPROXY_DEMO_VERBOSE=1 shows Haraka's logs).`);

  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    signal?.addEventListener('abort', finish, { once: true });
  });
  say('stopping...');
  await topology.stop();
  say('stopped.');
  return 0;
}
