// DNSSEC on loopback for the DANE tests, with Debian's real tools: zones signed with ldns-signzone, served
// by NSD, and unbound validating them with each signed zone's key as its trust anchor (the production
// resolver's job, with the root's key). Nothing leaves loopback: unbound's root hints point at an address
// where no one answers (or the root is a test zone too), and every test zone is a stub zone at NSD.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createDnssecResolver } from '../dane/resolver';
import { freePort } from './ports';

export const DNSSEC_TOOLS = ['/usr/sbin/nsd', '/usr/sbin/unbound', '/usr/bin/ldns-keygen', '/usr/bin/ldns-signzone'];

export interface TestZone {
  /** `dane-ee.test`, or `.`: a root zone (signed, it makes unbound's root SOA answer secure). */
  name: string;
  /** Zone file lines after the SOA and NS (which are added), names relative to the zone or absolute. */
  records: string[];
  /** Signed, with its key as a trust anchor of unbound (default true). False: an unsigned (insecure) zone. */
  signed?: boolean;
  /** Changes the signed zone file before NSD loads it: e.g. a record altered after signing (bogus). */
  tamper?: (signedZone: string) => string;
}

export interface DnssecPeers {
  /** The validating resolver (unbound). */
  resolver: { host: string; port: number };
  /** NSD: authoritative only, it never sets the AD bit. */
  authoritative: { host: string; port: number };
  /** unbound's and NSD's own logs, for a failing test's message. */
  logs(): string;
  close(): Promise<void>;
}

export interface DnssecPeersOptions {
  dir: string;
  zones: TestZone[];
  authoritativeHost?: string;
  resolverHost?: string;
}

/** `example.test.`, or `.` for the root zone. */
const absolute = (name: string) => (name === '.' ? '.' : `${name}.`);

function zoneText(zone: TestZone, nsHost: string): string {
  const origin = absolute(zone.name);
  const under = (label: string) => (origin === '.' ? `${label}.` : `${label}.${origin}`);
  return [
    `$ORIGIN ${origin}`,
    '$TTL 60',
    `@ IN SOA ${under('ns')} ${under('hostmaster')} 1 3600 600 86400 60`,
    `@ IN NS ${under('ns')}`,
    `ns IN A ${nsHost}`,
    ...zone.records,
    '',
  ].join('\n');
}

/** Signs the zone file; returns the signed file and the DNSKEY line unbound trusts. */
function signZone(dir: string, zone: TestZone, file: string): { signedFile: string; trustAnchor: string } {
  const base = execFileSync('ldns-keygen', ['-a', 'ECDSAP256SHA256', '-k', absolute(zone.name)], { cwd: dir, encoding: 'utf8' }).trim();
  execFileSync('ldns-signzone', ['-f', `${file}.signed`, file, base], { cwd: dir });
  const key = readFileSync(path.join(dir, `${base}.key`), 'utf8');
  const trustAnchor = (key.split(';')[0] ?? '').replace(/\s+/g, ' ').trim();
  const signedFile = `${file}.signed`;
  if (zone.tamper) writeFileSync(signedFile, zone.tamper(readFileSync(signedFile, 'utf8')));
  return { signedFile, trustAnchor };
}

function startDaemon(command: string, args: string[], output: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  return child;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  });
}

export async function startDnssecPeers(options: DnssecPeersOptions): Promise<DnssecPeers> {
  const dir = path.resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const nsHost = options.authoritativeHost ?? '127.0.0.21';
  const resolverHost = options.resolverHost ?? '127.0.0.22';
  const nsPort = await freePort(nsHost);
  const resolverPort = await freePort(resolverHost);

  const anchors: string[] = [];
  const nsdZones: string[] = [];
  for (const zone of options.zones) {
    const file = path.join(dir, `${zone.name === '.' ? 'root' : zone.name}.zone`);
    writeFileSync(file, zoneText(zone, nsHost));
    let served = file;
    if (zone.signed !== false) {
      const { signedFile, trustAnchor } = signZone(dir, zone, file);
      served = signedFile;
      anchors.push(trustAnchor);
    }
    nsdZones.push(`zone:\n  name: "${zone.name}"\n  zonefile: "${served}"\n`);
  }

  const nsdConf = path.join(dir, 'nsd.conf');
  writeFileSync(
    nsdConf,
    [
      'server:',
      `  ip-address: ${nsHost}@${nsPort}`,
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      `  zonelistfile: "${dir}/zone.list"`,
      '  database: ""',
      `  pidfile: "${dir}/nsd.pid"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  xfrdir: "${dir}"`,
      '  server-count: 1',
      '  verbosity: 1',
      'remote-control:',
      '  control-enable: no',
      ...nsdZones,
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'root.hints'), '. 3600 IN NS root.\nroot. 3600 IN A 127.0.0.254\n');
  const unboundConf = path.join(dir, 'unbound.conf');
  const tlds = [...new Set(options.zones.filter((zone) => zone.name !== '.').map((zone) => zone.name.split('.').pop()))];
  writeFileSync(
    unboundConf,
    [
      'server:',
      `  interface: ${resolverHost}@${resolverPort}`,
      `  port: ${resolverPort}`,
      '  do-daemonize: no',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      `  pidfile: "${dir}/unbound.pid"`,
      '  use-syslog: no',
      '  logfile: ""',
      '  verbosity: 1',
      '  val-log-level: 2',
      '  module-config: "validator iterator"',
      '  do-not-query-localhost: no',
      '  access-control: 127.0.0.0/8 allow',
      // A root zone of our own is a stub zone like the others (root hints would override it).
      ...(options.zones.some((zone) => zone.name === '.') ? [] : [`  root-hints: "${dir}/root.hints"`]),
      '  qname-minimisation: no',
      '  num-threads: 1',
      // unbound answers special-use names such as .test itself unless told not to.
      ...tlds.map((tld) => `  local-zone: "${tld}." nodefault`),
      ...anchors.map((anchor) => `  trust-anchor: "${anchor}"`),
      'remote-control:',
      '  control-enable: no',
      ...options.zones.map((zone) => `stub-zone:\n  name: "${zone.name}"\n  stub-addr: ${nsHost}@${nsPort}`),
      '',
    ].join('\n'),
  );

  const output: string[] = [];
  const nsd = startDaemon('/usr/sbin/nsd', ['-d', '-c', nsdConf], output);
  const unbound = startDaemon('/usr/sbin/unbound', ['-d', '-c', unboundConf], output);
  const close = async () => {
    await Promise.all([stop(unbound), stop(nsd)]);
  };
  const probe = createDnssecResolver({ host: resolverHost, port: resolverPort, timeoutMs: 500 });
  const first = options.zones[0]?.name;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = first ? await probe.query(first === '.' ? 'ns.' : `ns.${first}`, 'A').catch(() => null) : { kind: 'records' };
    if (answer && answer.kind !== 'failed') break;
    if (Date.now() > deadline || nsd.exitCode !== null || unbound.exitCode !== null) {
      await close();
      throw new Error(`NSD and unbound did not come up on ${nsHost}:${nsPort} and ${resolverHost}:${resolverPort}:\n${output.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { resolver: { host: resolverHost, port: resolverPort }, authoritative: { host: nsHost, port: nsPort }, logs: () => output.join(''), close };
}
