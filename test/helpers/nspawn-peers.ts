// Stand-ins inside the systemd container (test/helpers/nspawn.ts): the backend (an SMTP sink that speaks
// XCLIENT), an "internet" MX, a DNS server and a DNSSEC-validating resolver, run by the container's
// systemd as transient units (systemd-run), so they live in its network namespace and end with it. They
// are the project's own test peers from dist/src/testpeers; each message a sink takes is written as JSON
// to its directory.
import path from 'node:path';
import type { Zone } from '../../src/testpeers/dns-server';
import type { TestZone } from '../../src/testpeers/dnssec';
import { CONTAINER_NODE, type Container } from './nspawn';

export interface SinkSpec {
  host: string;
  port: number;
  /** Advertise XCLIENT (the backend stand-in). */
  xclient: boolean;
  name: string;
  /** Directory in the container that receives one JSON file per message. */
  dir: string;
  /** Answer recipients as a real backend does (src/demo/mailboxes.ts: Postfix with
   * smtpd_reject_unlisted_recipient): these mailboxes at `domains` are taken, any other local part is an
   * unknown user (550 5.1.1), another domain is relaying (554 5.7.1). Without it every recipient is taken. */
  recipients?: { domains: string[]; mailboxes: string[] };
}

export interface PeersSpec {
  dns?: { host: string; port: number; zone: Zone };
  sinks?: SinkSpec[];
  /** Signed zones served by NSD and a validating unbound that trusts their keys (src/testpeers/dnssec.ts);
   * its ports are free ones, returned by startPeers. */
  dnssec?: { dir: string; zones: Omit<TestZone, 'tamper'>[]; authoritativeHost?: string; resolverHost?: string };
}

export interface StartedPeers {
  /** The validating resolver and the authoritative server of `dnssec`, when it was asked for. */
  dnssec?: { resolver: { host: string; port: number }; authoritative: { host: string; port: number } };
}

export interface StoredMessage {
  mailFrom: string;
  rcptTo: string[];
  /** XCLIENT attributes as the client sent them. */
  xclient: Record<string, string>;
  subject: string;
  raw: string;
}

// CommonJS run by the container's Node: argv = dist dir, spec file, ready file.
const SCRIPT = `'use strict';
const fs = require('node:fs');
const path = require('node:path');
const [dist, specFile, readyFile] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(specFile, 'utf8'));
const { startSmtpSink } = require(path.join(dist, 'src/testpeers/smtp-sink.js'));
const { startDnsServer } = require(path.join(dist, 'src/testpeers/dns-server.js'));
(async () => {
  const started = {};
  if (spec.dns) await startDnsServer(spec.dns.zone, spec.dns.host, spec.dns.port);
  if (spec.dnssec) {
    const { startDnssecPeers } = require(path.join(dist, 'src/testpeers/dnssec.js'));
    const peers = await startDnssecPeers(spec.dnssec);
    started.dnssec = { resolver: peers.resolver, authoritative: peers.authoritative };
  }
  for (const sink of spec.sinks || []) {
    fs.mkdirSync(sink.dir, { recursive: true });
    let count = 0;
    const recipients = sink.recipients;
    const refusal = recipients ? require(path.join(dist, 'src/demo/mailboxes.js')).backendRecipientRefusal : null;
    await startSmtpSink({
      host: sink.host, port: sink.port, xclient: sink.xclient, name: sink.name,
      ...(refusal ? { rejectRecipient: (address) => refusal(address, recipients.domains, recipients.mailboxes) } : {}),
      onMessage(message) {
        count += 1;
        const file = path.join(sink.dir, String(count).padStart(4, '0') + '.json');
        const stored = { mailFrom: message.mailFrom, rcptTo: message.rcptTo, xclient: message.xclientSent, subject: message.subject, raw: message.raw.toString('utf8') };
        fs.writeFileSync(file + '.tmp', JSON.stringify(stored));
        fs.renameSync(file + '.tmp', file);
      },
    });
  }
  fs.writeFileSync(readyFile + '.tmp', JSON.stringify(started));
  fs.renameSync(readyFile + '.tmp', readyFile);
})().catch((err) => { console.error(err); process.exit(1); });
`;

const PEERS_DIR = '/run/mailproxy-test';

/** Starts the stand-ins as the transient unit `unit` and waits until they listen. */
export async function startPeers(container: Container, unit: string, spec: PeersSpec, distDir: string): Promise<StartedPeers> {
  const script = path.posix.join(PEERS_DIR, 'peers.cjs');
  const specFile = path.posix.join(PEERS_DIR, `${unit}.json`);
  const readyFile = path.posix.join(PEERS_DIR, `${unit}.ready`);
  container.writeFile(script, SCRIPT);
  container.writeFile(specFile, JSON.stringify(spec));
  await container.ok(['systemd-run', `--unit=${unit}`, '--quiet', '--', CONTAINER_NODE, script, distDir, specFile, readyFile]);
  // Signing zones and starting NSD and unbound take a few seconds more.
  const deadline = Date.now() + (spec.dnssec ? 30_000 : 15_000);
  while (!container.exists(readyFile)) {
    const state = (await container.run(['systemctl', 'is-active', unit])).stdout.trim();
    if (state === 'failed' || state === 'inactive' || Date.now() > deadline) {
      const journal = await container.run(['journalctl', '-u', unit, '-o', 'cat', '--no-pager']);
      throw new Error(`test peers ${unit} did not start (${state}):\n${journal.stdout}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return JSON.parse(container.readFile(readyFile) ?? '{}') as StartedPeers;
}

/** The messages a sink has taken so far, oldest first. */
export function storedMessages(container: Container, dir: string): StoredMessage[] {
  return container
    .list(dir)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => JSON.parse(container.readFile(path.posix.join(dir, name)) ?? 'null') as StoredMessage);
}
