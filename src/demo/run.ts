// `mailproxy demo` (`npm start`): the whole appliance on loopback with a built-in config, printing each
// message the backend stand-in and the "internet" MX receive, until Ctrl-C. It writes .demo/ (the config,
// the rendered instances, the certificate, each Haraka's log) and prints how to run doctor, selftest and
// stats against it.
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import libmime from 'libmime';
import type { Writable } from 'node:stream';
import { takenDemoPorts } from './ports';
import { backendRecipientRefusal, DEMO_MAILBOXES } from './mailboxes';
import { DEMO_DOMAIN, DEMO_PORTS, INTERNET_DOMAIN, LOOPBACK, startTopology, type Topology } from './topology';

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

/** A path as the user types it from where the demo runs: relative under the current directory. */
function shown(file: string, cwd: string): string {
  const relative = path.relative(cwd, file);
  return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
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
  // Each Haraka's log in a file, as journald keeps it on a VPS: `mailproxy stats` reads haraka-in's.
  mkdirSync(stateDir, { recursive: true });
  const logs = {
    'haraka-in': createWriteStream(path.join(stateDir, 'haraka-in.log'), { flags: 'w' }),
    'haraka-out': createWriteStream(path.join(stateDir, 'haraka-out.log'), { flags: 'w' }),
  };
  const closeLogs = () => Promise.all(Object.values(logs).map((log) => new Promise<void>((resolve) => log.end(() => resolve()))));
  const echo = (name: string, line: string) => {
    logs[name as keyof typeof logs]?.write(`${line}\n`);
    if (verbose && !ICONV_NOTE.test(line)) io.stderr.write(`[${name}] ${line}\n`);
  };
  let topology: Topology;
  try {
    topology = await startTopology({
      stateDir,
      ports: DEMO_PORTS,
      backend: {
        onMessage: (message) => say(describe(`backend stand-in ${LOOPBACK.backend}:${DEMO_PORTS.backend}`, message)),
        rejectRecipient: (address) => backendRecipientRefusal(address, [DEMO_DOMAIN]),
      },
      internet: { onMessage: (message) => say(describe(`internet MX ${LOOPBACK.internet}:${DEMO_PORTS.internetMx}`, message)) },
      echo,
    });
  } catch (err) {
    await closeLogs();
    throw err;
  }
  const { config } = topology;
  const cwd = process.cwd();
  const configFile = shown(topology.configPath, cwd);
  const inbound = `${topology.inbound.host}:${topology.inbound.port}`;
  const outbound = `${topology.outbound.host}:${topology.outbound.port}`;
  const resolver = `${LOOPBACK.dns}:${DEMO_PORTS.dns}`;
  const mailboxes = DEMO_MAILBOXES.map((box) => `${box}@${DEMO_DOMAIN}`).join(', ');
  say(`mailproxy demo is running (config: ${topology.configPath}, rendered instances: ${topology.instancesDir})
  haraka-in   ${inbound}   public MX for ${DEMO_DOMAIN}, forwards to the backend stand-in ${LOOPBACK.backend}:${DEMO_PORTS.backend}
  haraka-out  ${outbound}   relays for ${LOOPBACK.backend} only, delivers by MX (DNS on ${resolver}) to ${LOOPBACK.internet}:${DEMO_PORTS.internetMx}
  The backend stand-in has the mailboxes ${mailboxes}: it refuses other users (550 5.1.1) and relaying (554 5.7.1).
  The DNS server publishes ${DEMO_DOMAIN}'s records as on a VPS: MX ${config.hostname}, ${config.hostname} A ${config.public_ipv4} (the public
  address haraka-in on ${topology.inbound.host} stands in for) with its PTR, SPF, DMARC, TLS-RPT; every other name is NXDOMAIN.
  Logs: ${shown(path.join(stateDir, 'haraka-in.log'), cwd)}, ${shown(path.join(stateDir, 'haraka-out.log'), cwd)}

Send a message in (internet -> haraka-in -> backend):
  swaks --server ${inbound} --from someone@${INTERNET_DOMAIN} --to alice@${DEMO_DOMAIN}
  node bin/mailproxy.js send --server ${inbound} --from someone@${INTERNET_DOMAIN} --to alice@${DEMO_DOMAIN}
Send a message out (backend -> haraka-out -> internet):
  swaks --server ${outbound} --local-interface ${LOOPBACK.backend} --from alice@${DEMO_DOMAIN} --to bob@${INTERNET_DOMAIN}
  node bin/mailproxy.js send --server ${outbound} --local-address ${LOOPBACK.backend} --from alice@${DEMO_DOMAIN} --to bob@${INTERNET_DOMAIN}
Check it as you would a VPS (each exits 0 here; nothing leaves loopback):
  node bin/mailproxy.js doctor --config ${configFile} --resolver ${resolver}
  node bin/mailproxy.js selftest --config ${configFile} --resolver ${resolver} --ca ${shown(config.tls.cert, cwd)}
  node bin/mailproxy.js stats ${shown(path.join(stateDir, 'haraka-in.log'), cwd)}
Press Ctrl-C to stop (MAILPROXY_DEMO_VERBOSE=1 shows Haraka's logs).`);

  await new Promise<void>((resolve) => {
    const finish = () => resolve();
    process.once('SIGINT', finish);
    process.once('SIGTERM', finish);
    signal?.addEventListener('abort', finish, { once: true });
  });
  say('stopping...');
  await topology.stop();
  await closeLogs();
  say('stopped.');
  return 0;
}
