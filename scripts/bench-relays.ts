// haraka-out against a Postfix relay, in the same run (`npm run bench`, last): each relays RELAY_LOAD
// messages from the backend's address to its own loopback MX stand-in, C sessions at a time (the rate until
// all were delivered, and the relay's peak RSS), then OUT_SERIAL messages one after another over one
// connection (ms per message to the 250 and until delivered, and the kernel's TcpExt DelayedACKs during that
// run), once one command at a time and once with MAIL, RCPT and DATA pipelined as Postfix sends them.
// The Postfix relay is Postfix 3 as its test peer runs it (test/fixtures/postfix.ts), with relayhost the MX
// stand-in, mynetworks loopback and nothing else changed: its qmgr, its connection cache, its defaults.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { LOOPBACK, startTopology } from '../src/demo/topology';
import { dataPayload, SmtpScript } from '../src/smtp/script';
import { freePort } from '../src/testpeers/ports';
import { startSmtpSink, type SmtpSink } from '../src/testpeers/smtp-sink';
import { startPostfix } from '../test/fixtures/postfix';
import { cpuBusySeconds, expectCode, type LoadOptions, messageOfSize, oneMessage, peakRssMb, portsFrom, randomBasePort } from './bench-setup';

export interface Relay {
  label: string;
  host: string;
  port: number;
  /** The MX stand-in the relay delivers to. */
  mx: SmtpSink;
  /** The process whose peak RSS is reported (Postfix's is many processes: none). */
  pid?: number;
  stop(): Promise<void>;
}

/** Each relay gets CPU 0 to itself (Postfix: every one of its processes); the load and the MX stand-ins run on CPU 1. */
const RELAY_CPU = 0;

/** haraka-out as rendered (log level warn) and its loopback MX. */
async function harakaOut(root: string, name: string): Promise<Relay> {
  const topology = await startTopology({
    stateDir: path.join(root, name),
    ports: portsFrom(randomBasePort()),
    instances: ['haraka-out'],
    harakaPrefix: ['taskset', '-c', String(RELAY_CPU)],
    tweak: (config) => void (config.log_level = 'warn'),
  });
  const pid = topology.haraka['haraka-out']?.child.pid;
  return {
    label: 'haraka-out',
    host: topology.outbound.host,
    port: topology.outbound.port,
    mx: topology.internet as SmtpSink,
    ...(pid ? { pid } : {}),
    stop: () => topology.stop(),
  };
}

const POSTFIX_MX = '127.0.0.7';

/** A Postfix relay on loopback that takes mail from 127.0.0.0/8 and sends it all to its own MX stand-in. */
async function postfixRelay(): Promise<Relay> {
  const mx = await startSmtpSink({ host: POSTFIX_MX, port: await freePort(POSTFIX_MX), reverseLookup: false });
  const postfix = await startPostfix({
    listenHost: '127.0.0.6',
    port: 0,
    domains: ['backend.test'],
    users: [],
    xclientHosts: [],
    advertiseXclient: false,
    mynetworks: ['127.0.0.0/8'],
    cpu: RELAY_CPU,
    extraMainCf: {
      relayhost: `[${POSTFIX_MX}]:${mx.port}`,
      default_transport: 'smtp',
      relay_transport: 'smtp',
      smtpd_relay_restrictions: 'permit_mynetworks, reject',
      smtp_tls_security_level: 'none',
    },
  });
  return {
    label: 'Postfix relay',
    host: postfix.host,
    port: postfix.port,
    mx,
    stop: async () => {
      await postfix.stop();
      await mx.close();
    },
  };
}

/** A session to the relay from the backend's address, past EHLO. */
async function backendSession(relay: Relay): Promise<SmtpScript> {
  const session = await SmtpScript.connect(relay.host, relay.port, LOOPBACK.backend);
  await expectCode(session, null, 220);
  await expectCode(session, 'EHLO backend.test', 250);
  return session;
}

/** Messages per second until all were delivered to the relay's MX, one message per session, C at a time. */
async function relayRate(relay: Relay, load: LoadOptions): Promise<number> {
  const payload = dataPayload(messageOfSize(load.size));
  const before = relay.mx.messages.length;
  let next = 0;
  const busyBefore = cpuBusySeconds(RELAY_CPU);
  const started = process.hrtime.bigint();
  const worker = async () => {
    while (next < load.messages) {
      next += 1;
      const session = await backendSession(relay);
      await oneMessage(session, payload, 'bob@example.net');
      session.close();
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, worker));
  await relay.mx.waitForMessages(before + load.messages, 300_000);
  const rate = load.messages / (Number(process.hrtime.bigint() - started) / 1e9);
  const cpuMs = ((cpuBusySeconds(RELAY_CPU) - busyBefore) * 1000) / load.messages;
  const rss = relay.pid === undefined ? '' : `, peak RSS ${peakRssMb(relay.pid).toFixed(0)} MB`;
  console.log(
    `${relay.label.padEnd(38)} ${rate.toFixed(0).padStart(6)} msg/s relayed and delivered (${load.messages} messages, ${load.concurrency} at a time${rss}); CPU ${RELAY_CPU} busy ${cpuMs.toFixed(2)} ms/msg`,
  );
  return rate;
}

/** TcpExt DelayedACKs of this network namespace (/proc/net/netstat: a line of names, then a line of values). */
function delayedAcks(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('TcpExt:'));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('DelayedACKs')]);
}

/** ms per message over one connection, one command at a time and pipelined; returns the pipelined figure. */
async function relaySerial(relay: Relay, load: LoadOptions, count: number): Promise<number> {
  const payload = dataPayload(messageOfSize(load.size));
  const envelope = ['MAIL FROM:<load@demo.test>', 'RCPT TO:<bob@example.net>', 'DATA'];
  const pipelinedMessage = async (session: SmtpScript) => {
    session.write(envelope.map((line) => `${line}\r\n`).join(''));
    for (const code of [250, 250, 354]) await expectCode(session, null, code);
    session.write(payload);
    await expectCode(session, null, 250);
  };
  let last = NaN;
  for (const pipelined of [false, true]) {
    const session = await backendSession(relay);
    const send = () => (pipelined ? pipelinedMessage(session) : oneMessage(session, payload, 'bob@example.net'));
    const delivered = relay.mx.messages.length + 1;
    await send(); // warm up: a session, a queue write, a delivery
    await relay.mx.waitForMessages(delivered, 30_000);
    const acksBefore = delayedAcks();
    const started = process.hrtime.bigint();
    for (let i = 0; i < count; i++) await send();
    const acceptMs = Number(process.hrtime.bigint() - started) / 1e6 / count;
    const acksAccepted = delayedAcks() - acksBefore;
    await relay.mx.waitForMessages(delivered + count, 300_000);
    const deliveredMs = Number(process.hrtime.bigint() - started) / 1e6 / count;
    const acks = delayedAcks() - acksBefore;
    session.write('QUIT\r\n');
    session.close();
    const label = `${relay.label}, one connection${pipelined ? ', pipelined' : ''}`;
    console.log(
      `${label.padEnd(38)} ${acceptMs.toFixed(2).padStart(6)} ms/msg to the 250, ${deliveredMs.toFixed(2)} ms/msg until delivered to the MX (${count} messages); ` +
        `TcpExt DelayedACKs ${acks} = ${(acks / count).toFixed(2)}/msg (${acksAccepted} before the last 250; system-wide)`,
    );
    last = acceptMs;
  }
  return last;
}

/** haraka-out, then the Postfix relay (when Postfix is installed), and their ratios. */
export async function compareRelays(root: string, load: LoadOptions & { serial: number }): Promise<void> {
  const figures = new Map<string, { rate: number; serialMs: number }>();
  const makers: [string, () => Promise<Relay>][] = [
    ['haraka-out', () => harakaOut(root, 'outbound')],
    ['Postfix relay', postfixRelay],
  ];
  for (const [name, make] of makers) {
    let relay: Relay;
    try {
      relay = await make();
    } catch (err) {
      console.log(`${name}: not measured (${(err as Error).message.split('\n')[0]})`);
      continue;
    }
    try {
      figures.set(name, { rate: await relayRate(relay, load), serialMs: await relaySerial(relay, load, load.serial) });
    } finally {
      await relay.stop();
    }
  }
  const ours = figures.get('haraka-out');
  const postfix = figures.get('Postfix relay');
  if (ours && postfix) {
    console.log(
      `ratio haraka-out / Postfix relay:      ${(ours.rate / postfix.rate).toFixed(2)}x msg/s (target >= 1.5); one connection, pipelined: ${ours.serialMs.toFixed(2)} vs ${postfix.serialMs.toFixed(2)} ms/msg (target <=)`,
    );
  }
}
