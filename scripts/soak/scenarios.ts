// The soak's traffic: each scenario one client doing one thing (good mail in and out, an unknown
// recipient, a relay attempt, SMTP smuggling, a malformed command, a slow client, a silent one), and
// what it records in the ledger.
import type { ReceivedMessage } from '../../src/testpeers/smtp-sink';
import { INTERNET_DOMAIN, LOOPBACK, type Topology } from '../../src/demo/topology';
import { attempt, Client } from './client';
import type { Direction, Ledger, Tracked } from './ledger';
import { sleep } from './options';

export const USERS = ['alice', 'bob', 'carol'];
const SMUGGLING_ENDINGS: [string, string][] = [
  ['LF.LF', '\n.\n'],
  ['CR.CR', '\r.\r'],
  ['CRLF.CRCRLF', '\r\n.\r\r\n'],
  ['CRLF NUL.CRLF', '\r\n\x00.\r\n'],
  ['LF.CRLF', '\n.\r\n'],
  ['CRLF.LF', '\r\n.\n'],
  ['pipelined after CRLF.CRLF', '\r\n.\r\n'],
];
/** [kind, command line(s) after EHLO, reply codes that are right]. */
const MALFORMED: [string, string, number[]][] = [
  ['command over 512 octets', `MAIL FROM:<${'a'.repeat(600)}@example.net>\r\n`, [521]],
  ['NUL in a command', 'MAIL FROM:<a\0b@example.net>\r\n', [501]],
  ['bare CR in a command', 'NOOP\rMAIL FROM:<x@example.net>\r\n', [500]],
  ['invalid address', 'MAIL FROM:<a@b@c>\r\n', [501]],
  ['RCPT before MAIL', 'RCPT TO:<alice@demo.test>\r\n', [503]],
  ['DATA before MAIL', 'DATA\r\n', [503]],
  ['unknown command', 'FROBNICATE\r\n', [500]],
  ['XCLIENT to haraka-in', 'XCLIENT ADDR=6.6.6.6 NAME=spoofed.example\r\n', [500, 502, 550]],
  ['invalid UTF-8 in an address', 'MAIL FROM:<ok@example.net>\r\nRCPT TO:<\xe9@demo.test>\r\n', [250]],
];

export interface Soak {
  t: Topology;
  ledger: Ledger;
  random: () => number;
  backendMessages: ReceivedMessage[];
  mxMessages: ReceivedMessage[];
}

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
const clientAddress = (random: () => number) => `127.0.0.${10 + Math.floor(random() * 50)}`;

function body(id: string, to: string, extra = ''): string {
  return `From: sender@example.net\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@soak.example.net>\r\n\r\nsoak message ${id}\r\n${extra}${'soak body line\r\n'.repeat(12)}`;
}

/** A message that must be delivered: retried on 4xx or a broken connection, like an MTA. */
async function deliverable(soak: Soak, direction: Direction, kind: string, slowMs = 0): Promise<void> {
  const { t, ledger, random } = soak;
  const id = ledger.nextId(direction === 'in' ? 'in' : 'out');
  const rcpt = direction === 'in' ? `${pick(random, USERS)}@demo.test` : `${id}@${INTERNET_DOMAIN}`;
  const entry: Tracked = { id, direction, kind, acceptedAt: null, attempts: 0, finalCode: 0, latencyMs: null };
  ledger.tracked.set(id, entry);
  for (let tries = 0; tries < 6; tries++) {
    entry.attempts += 1;
    const started = Date.now();
    const code =
      direction === 'in'
        ? await attempt(t.inbound.host, t.inbound.port, 'sender@example.net', clientAddress(random), rcpt, body(id, rcpt), slowMs)
        : await attempt(t.outbound.host, t.outbound.port, 'alice@demo.test', LOOPBACK.backend, rcpt, body(id, rcpt));
    entry.finalCode = code;
    if (code === 250) {
      entry.acceptedAt = Date.now();
      entry.latencyMs = Date.now() - started;
      return;
    }
    if (code >= 500) break;
    await sleep(3000);
  }
  ledger.refuse(entry.finalCode, `${kind} (after ${entry.attempts} attempts)`);
}

async function unknownRecipient(soak: Soak): Promise<void> {
  const code = await attempt(
    soak.t.inbound.host,
    soak.t.inbound.port,
    'sender@example.net',
    clientAddress(soak.random),
    `nobody${soak.ledger.counter}@demo.test`,
    body('unknown', 'nobody'),
  );
  soak.ledger.refuse(code, 'unknown recipient');
  if (code !== 550 && code !== 451 && code !== 0) soak.ledger.unexpected.push(`unknown recipient got ${code}`);
}

async function relayAttempt(soak: Soak): Promise<void> {
  const inbound = soak.random() < 0.5;
  const code = inbound
    ? await attempt(soak.t.inbound.host, soak.t.inbound.port, 'spammer@example.org', clientAddress(soak.random), `victim@${INTERNET_DOMAIN}`, body('relay', 'victim'))
    : await attempt(soak.t.outbound.host, soak.t.outbound.port, 'spammer@example.org', '127.0.0.9', `victim@${INTERNET_DOMAIN}`, body('relay', 'victim'));
  soak.ledger.refuse(code, inbound ? 'relay via haraka-in' : 'relay via haraka-out from outside the ACL');
  if (code === 250) soak.ledger.unexpected.push(`relay attempt (${inbound ? 'in' : 'out'}) accepted`);
}

async function smuggling(soak: Soak): Promise<void> {
  const { t, ledger, random } = soak;
  const [name, ending] = pick(random, SMUGGLING_ENDINGS);
  const id = ledger.nextId('carrier');
  const smuggledFrom = `smuggled-${id}@evil.example`;
  let client: Client | null = null;
  let code = 0;
  try {
    client = await Client.connect(t.inbound.host, t.inbound.port, clientAddress(random));
    await client.reply();
    await client.command('EHLO client.soak.example.net');
    const steps = [await client.command('MAIL FROM:<sender@example.net>'), await client.command('RCPT TO:<alice@demo.test>'), await client.command('DATA')];
    if (steps[2]!.code === 354) {
      client.write(`${body(id, 'alice@demo.test')}end${ending}MAIL FROM:<${smuggledFrom}>\r\nRCPT TO:<bob@demo.test>\r\nDATA\r\nSubject: smuggled ${id}\r\n\r\nsmuggled\r\n.\r\n`);
      code = (await client.reply(60_000)).code;
    } else code = steps.find((s) => s.code !== 250 && s.code !== 354)?.code ?? 0;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  ledger.bad(`smuggling ${name}`, code === 451 || code === 250);
  // A carrier told 250 must be delivered (once), like any message.
  if (code === 250) ledger.tracked.set(id, { id, direction: 'in', kind: 'smuggling carrier', acceptedAt: Date.now(), attempts: 1, finalCode: 250, latencyMs: null });
  else ledger.refuse(code, `smuggling carrier ${name}`);
}

async function malformed(soak: Soak): Promise<void> {
  const [kind, lines, expected] = pick(soak.random, MALFORMED);
  let code = 0;
  let client: Client | null = null;
  try {
    client = await Client.connect(soak.t.inbound.host, soak.t.inbound.port, clientAddress(soak.random));
    await client.reply();
    await client.command('EHLO client.soak.example.net');
    client.write(lines);
    code = (await client.reply()).code;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  soak.ledger.bad(kind, expected.includes(code));
}

async function idleClient(soak: Soak): Promise<void> {
  let code = 0;
  let client: Client | null = null;
  try {
    client = await Client.connect(soak.t.inbound.host, soak.t.inbound.port, clientAddress(soak.random));
    await client.reply();
    code = (await client.reply(60_000)).code;
  } catch {
    code = 0;
  } finally {
    client?.close();
  }
  soak.ledger.bad('silent client (inactivity timeout)', code === 421);
}

export const SCENARIOS: [number, string, (soak: Soak) => Promise<void>][] = [
  [40, 'good mail in', (soak) => deliverable(soak, 'in', 'good mail in')],
  [20, 'good mail out', (soak) => deliverable(soak, 'out', 'good mail out')],
  [8, 'unknown recipient', unknownRecipient],
  [6, 'relay attempt', relayAttempt],
  [8, 'smuggling attempt', smuggling],
  [8, 'malformed command', malformed],
  [7, 'slow client', (soak) => deliverable(soak, 'in', 'slow client', 1000 + Math.floor(soak.random() * 1500))],
  [3, 'silent client', idleClient],
];
