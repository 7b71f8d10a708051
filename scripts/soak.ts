// `npm run soak -- [--minutes N] [--rate R] [--fault-every S] [--seed X]`: a bounded soak of the whole
// appliance on loopback. A script that prints a report, never a CI test.
//
//   clients ──▶ haraka-in ──▶ tunnel (a TCP proxy: drops, outages) ──▶ backend stand-in (restarts)
//   "backend" 127.0.0.2 ──▶ haraka-out (kill -9) ──▶ "internet" MX for example.net
//
// Mixed traffic arrives at --rate messages a second (default 4): good mail in and out, unknown recipients,
// relay attempts on both instances, SMTP smuggling attempts, malformed commands, slow clients and idle ones.
// Every --fault-every seconds (default 30) one fault, in turn: the backend restarts, the tunnel drops every
// connection and blackholes new ones for a few seconds, haraka-out is killed with SIGKILL and started again.
// Senders retry a temporary failure like an MTA would (5 times, 3 s apart). At the end the report counts
// what was offered, accepted (told 250), delivered, refused (by reply code), lost (told 250, never
// delivered: must be 0), duplicated (delivered twice: must be 0), smuggled messages delivered (must be
// 0), bad inputs by kind, peak RSS of each Haraka and latency percentiles. Exit status 1 when lost,
// duplicated or smuggled is not 0.
//
// soak/options.ts reads the options, soak/tunnel.ts is the tunnel, soak/scenarios.ts the traffic (through
// soak/client.ts), soak/ledger.ts keeps the score, soak/report.ts writes the report; this file runs it.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { INTERNET_DOMAIN, LOOPBACK, startTopology, type TopologyPorts } from '../src/demo/topology';
import { freePort } from '../src/testpeers/ports';
import { startSmtpSink, type ReceivedMessage, type SmtpSink } from '../src/testpeers/smtp-sink';
import { Ledger, type Direction } from './soak/ledger';
import { parseOptions, prng, sleep } from './soak/options';
import { deliveredCounts, rssKb, soakReport, type InstanceName } from './soak/report';
import { SCENARIOS, USERS, type Soak } from './soak/scenarios';
import { Tunnel } from './soak/tunnel';

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const random = prng(options.seed);
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-soak-'));
  const ports: TopologyPorts = {
    inbound: await freePort(LOOPBACK.inbound),
    outbound: await freePort(LOOPBACK.wireguard),
    backend: await freePort(LOOPBACK.backend),
    internetMx: await freePort(LOOPBACK.internet),
    dns: await freePort(LOOPBACK.dns),
  };
  const sinkPort = await freePort(LOOPBACK.backend);
  const backendMessages: ReceivedMessage[] = [];
  const mxMessages: ReceivedMessage[] = [];
  const startBackend = () =>
    startSmtpSink({
      host: LOOPBACK.backend,
      port: sinkPort,
      name: 'backend.test',
      xclient: true,
      rejectRecipient: (address) =>
        USERS.includes(address.split('@')[0]!.toLowerCase()) && address.toLowerCase().endsWith('@demo.test') ? null : `550 5.1.1 <${address}>: user unknown`,
      onMessage: (message) => backendMessages.push(message),
    });
  let backend: SmtpSink = await startBackend();
  const tunnel = await Tunnel.start(LOOPBACK.backend, ports.backend, LOOPBACK.backend, () => sinkPort);
  const mx = await startSmtpSink({ host: LOOPBACK.internet, port: ports.internetMx, name: `mx.${INTERNET_DOMAIN}`, onMessage: (message) => mxMessages.push(message) });
  const t = await startTopology({
    stateDir,
    ports,
    backend: false,
    internet: false,
    tweak: (config) => {
      config.log_level = 'warn';
      config.inbound = { ...config.inbound, inactivity_timeout: 10 };
      config.outbound = { ...config.outbound, retry_intervals: [5], max_queue_lifetime: 3600 };
    },
  });
  const ledger = new Ledger();
  const soak: Soak = { t, ledger, random, backendMessages, mxMessages };
  const peak: Record<InstanceName, number> = { 'haraka-in': 0, 'haraka-out': 0 };
  const sampler = setInterval(() => {
    for (const name of ['haraka-in', 'haraka-out'] as const) peak[name] = Math.max(peak[name], rssKb(t.haraka[name]?.child.pid));
  }, 1000);

  const started = Date.now();
  const deadline = started + options.minutes * 60_000;
  const running = new Set<Promise<void>>();
  const totalWeight = SCENARIOS.reduce((sum, [weight]) => sum + weight, 0);
  const offered = new Map<string, number>();
  process.stderr.write(`soak: ${options.minutes} min at ${options.rate}/s, a fault every ${options.faultEvery} s, seed ${options.seed}\n`);

  // Faults, in turn.
  const faultKinds = ['backend restart', 'tunnel drop', 'haraka-out kill -9'] as const;
  let faultIndex = 0;
  const faults = (async () => {
    for (;;) {
      await sleep(options.faultEvery * 1000);
      if (Date.now() > deadline - 10_000) return;
      const kind = faultKinds[faultIndex++ % faultKinds.length]!;
      ledger.fault(kind);
      process.stderr.write(`soak: ${Math.round((Date.now() - started) / 1000)} s: ${kind}\n`);
      if (kind === 'backend restart') {
        tunnel.blackhole = true;
        tunnel.drop();
        await backend.close();
        await sleep(2000);
        backend = await startBackend();
        tunnel.blackhole = false;
      } else if (kind === 'tunnel drop') {
        tunnel.blackhole = true;
        tunnel.drop();
        await sleep(3000);
        tunnel.blackhole = false;
      } else {
        await t.restart('haraka-out', 'SIGKILL');
      }
    }
  })();

  // Arrivals: Poisson at --rate a second, at most 60 scenarios at once.
  while (Date.now() < deadline) {
    await sleep(-Math.log(1 - random()) * (1000 / options.rate));
    if (running.size >= 60) continue;
    let roll = random() * totalWeight;
    const scenario = SCENARIOS.find(([weight]) => (roll -= weight) < 0) ?? SCENARIOS[0]!;
    offered.set(scenario[1], (offered.get(scenario[1]) ?? 0) + 1);
    const run = scenario[2](soak).catch((err: Error) => void ledger.unexpected.push(`${scenario[1]}: ${err.message}`));
    running.add(run);
    void run.finally(() => running.delete(run));
  }
  process.stderr.write(`soak: traffic stopped; waiting for ${running.size} clients and the queues\n`);
  await Promise.all(running);
  await faults;

  // Everything accepted must arrive: haraka-out retries every 5 s.
  const accepted = [...ledger.tracked.values()].filter((entry) => entry.acceptedAt !== null);
  const deliveredIds = (direction: Direction) => deliveredCounts(direction === 'in' ? backendMessages : mxMessages);
  const settleDeadline = Date.now() + 90_000;
  while (Date.now() < settleDeadline && accepted.some((entry) => !deliveredIds(entry.direction).has(entry.id))) await sleep(1000);
  await sleep(2000);
  clearInterval(sampler);

  const { text, failed } = soakReport({ options, ledger, offered, backendMessages, mxMessages, peakRssKb: peak });
  process.stdout.write(text);

  await t.stop();
  await tunnel.close();
  await backend.close();
  await mx.close();
  rmSync(stateDir, { recursive: true, force: true });
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`soak failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
