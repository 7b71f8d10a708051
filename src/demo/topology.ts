// The loopback topology of DESIGN.md, started for real: a DNS server, the backend stand-in, an "internet"
// MX, and both Haraka instances rendered from one config. The demo runs it on fixed ports; tests run it
// on free ports, with their own config tweaks.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { makeSelfSigned } from '../certs/selfsigned';
import { formatConfigError, loadConfigText } from '../config/load';
import type { Config, ConfigInput } from '../config/schema';
import { parseHostPort } from '../config/net';
import { ensureStateDirs } from '../haraka/state';
import { startHaraka, waitForBanner, type HarakaProcess } from '../haraka/process';
import { inboundListen } from '../config/paths';
import { renderInstances } from '../render/haraka';
import { writeRendered } from '../render/write';
import { startDnsServer, type DnsServer, type Zone } from '../testpeers/dns-server';
import { startSmtpSink, type SinkOptions, type SmtpSink } from '../testpeers/smtp-sink';
import { publishedZone } from './zone';

export const LOOPBACK = {
  inbound: '127.0.0.1',
  backend: '127.0.0.2',
  wireguard: '127.0.0.3',
  internet: '127.0.0.4',
  dns: '127.0.0.1',
} as const;

export interface TopologyPorts {
  inbound: number;
  outbound: number;
  backend: number;
  internetMx: number;
  dns: number;
}

export const DEMO_PORTS: TopologyPorts = { inbound: 2525, outbound: 2526, backend: 2600, internetMx: 2500, dns: 2553 };

export const DEMO_DOMAIN = 'demo.test';
export const INTERNET_DOMAIN = 'example.net';

export interface TopologyOptions {
  stateDir: string;
  ports: TopologyPorts;
  /** Change the config before it is rendered (tests use this for limits and timeouts). */
  tweak?: (config: ConfigInput) => void;
  backend?: Partial<SinkOptions> | false;
  internet?: Partial<SinkOptions> | false;
  /** Which instances to start. */
  instances?: ('haraka-in' | 'haraka-out')[];
  echo?: (name: string, line: string) => void;
  /** Extra environment for the Haraka processes (tests pass NODE_EXTRA_CA_CERTS for their test CA). */
  harakaEnv?: NodeJS.ProcessEnv;
  /** A command to run each Haraka under (the benchmark pins haraka-in to a CPU with taskset). */
  harakaPrefix?: string[];
  /** Change the rendered files before they are written (the benchmark swaps in other plugins). */
  transformFiles?: (files: Map<string, string>) => void;
}

export interface Topology {
  config: Config;
  configPath: string;
  instancesDir: string;
  dns: DnsServer;
  backend: SmtpSink | null;
  internet: SmtpSink | null;
  haraka: Partial<Record<'haraka-in' | 'haraka-out', HarakaProcess>>;
  inbound: { host: string; port: number };
  outbound: { host: string; port: number };
  restart(name: 'haraka-in' | 'haraka-out', signal?: 'SIGINT' | 'SIGKILL'): Promise<HarakaProcess>;
  stop(): Promise<void>;
}

export function loopbackConfig(stateDir: string, ports: TopologyPorts, tls: { key: string; cert: string }): ConfigInput {
  return {
    version: 1,
    hostname: 'mx.demo.test',
    public_ipv4: '192.0.2.25',
    domains: [DEMO_DOMAIN],
    inbound: { listen: [`${LOOPBACK.inbound}:${ports.inbound}`] },
    // The rig's backend stand-ins speak plaintext; STARTTLS to the backend (the production default) is
    // tested against a stand-in that offers it and against the real Postfix of the e2e suite.
    backend: { host: LOOPBACK.backend, port: ports.backend, connect_timeout: 2, timeout: 30, starttls: false },
    // All load in this rig comes from a few loopback addresses (benchmarks open hundreds of connections
    // from one, and hold hundreds of backend sessions on a sink without a process limit): the per-address
    // limits are off and the backend cap is out of the way here; the limits tests and `npm run bench:edge`
    // set their own.
    limits: { max_clients_per_ip: 0, max_connect_rate_per_ip: 0, max_backend_sessions: 10_000, max_backend_sessions_per_network: 10_000 },
    wireguard: { address: LOOPBACK.wireguard, network: '127.0.0.0/8' },
    outbound: {
      listen: `${LOOPBACK.wireguard}:${ports.outbound}`,
      relay_acl: [`${LOOPBACK.backend}/32`],
      mx_port: ports.internetMx,
      allow_local_mx: true,
      // The rig's "internet" MX is on loopback.
      allow_private_mx: true,
      // No validating resolver on this rig; test/integration/dane.test.ts brings its own unbound.
      dane: false,
    },
    tls,
    dns: { servers: [`${LOOPBACK.dns}:${ports.dns}`] },
    state_dir: stateDir,
    // The Node running the rig is the one its Haraka processes run on (check and health judge it).
    system: { node: process.execPath },
    log_level: 'info',
  };
}

/**
 * What the loopback DNS server answers: the "internet" (example.net's MX on 127.0.0.4, two clients' reverse
 * DNS) and the records a correct setup publishes for `config` (MX, A, PTR of the public address, SPF, DMARC,
 * TLS-RPT: zone.ts). Every other name is NXDOMAIN, so no DNSBL lists the public address, and no query
 * leaves loopback.
 */
export function loopbackZone(config: Config): Zone {
  const published = publishedZone(config);
  return {
    MX: { [INTERNET_DOMAIN]: [{ exchange: `mx.${INTERNET_DOMAIN}`, preference: 10 }], ...published.MX },
    A: {
      [`mx.${INTERNET_DOMAIN}`]: [LOOPBACK.internet],
      'client9.example.net': ['127.0.0.9'],
      'liar.example.net': ['127.0.0.11'],
      ...published.A,
    },
    AAAA: { ...published.AAAA },
    TXT: { ...published.TXT },
    PTR: {
      // A client with forward-confirmed reverse DNS, and one whose PTR name points elsewhere.
      '9.0.0.127.in-addr.arpa': ['client9.example.net'],
      '10.0.0.127.in-addr.arpa': ['liar.example.net'],
      ...published.PTR,
    },
  };
}

export async function startTopology(options: TopologyOptions): Promise<Topology> {
  const { stateDir, ports } = options;
  mkdirSync(stateDir, { recursive: true });
  const started: { stop(): Promise<unknown> }[] = [];
  const stopAll = async () => {
    for (const item of started.splice(0).reverse()) await item.stop().catch(() => undefined);
  };
  try {
    const pair = makeSelfSigned(path.join(stateDir, 'tls'), 'mx.demo.test');
    const input = loopbackConfig(path.join(stateDir, 'state'), ports, { key: pair.keyPath, cert: pair.certPath });
    options.tweak?.(input);
    const configPath = path.join(stateDir, 'mailproxy.yaml');
    writeFileSync(configPath, `# the loopback config mailproxy made for this run\n${stringify(input)}`);
    const loaded = loadConfigText(stringify(input));
    if (!loaded.ok) throw new Error(loaded.errors.map((error) => formatConfigError(configPath, error)).join('\n'));
    const config = loaded.config;
    const instancesDir = path.join(stateDir, 'instances');
    const files = renderInstances(config, { source: configPath });
    options.transformFiles?.(files);
    await writeRendered(instancesDir, files);

    const dns = await startDnsServer(loopbackZone(config), LOOPBACK.dns, ports.dns);
    started.push({ stop: () => dns.close() });
    const backend =
      options.backend === false ? null : await startSmtpSink({ host: LOOPBACK.backend, port: ports.backend, name: 'backend.test', xclient: true, ...options.backend });
    if (backend) started.push({ stop: () => backend.close() });
    const internet =
      options.internet === false ? null : await startSmtpSink({ host: LOOPBACK.internet, port: ports.internetMx, name: `mx.${INTERNET_DOMAIN}`, ...options.internet });
    if (internet) started.push({ stop: () => internet.close() });

    const inbound = parseHostPort(inboundListen(config)[0] ?? '') ?? { host: LOOPBACK.inbound, port: ports.inbound };
    const outbound = parseHostPort(config.outbound.listen) ?? { host: LOOPBACK.wireguard, port: ports.outbound };
    const haraka: Topology['haraka'] = {};
    const endpoints = { 'haraka-in': inbound, 'haraka-out': outbound } as const;
    const launch = async (name: 'haraka-in' | 'haraka-out') => {
      ensureStateDirs(config, name);
      const echo = options.echo;
      const proc = startHaraka({
        name,
        instanceDir: path.join(instancesDir, name),
        ...(options.harakaEnv ? { env: options.harakaEnv } : {}),
        ...(options.harakaPrefix ? { prefix: options.harakaPrefix } : {}),
        ...(echo ? { echo: (line: string) => echo(name, line) } : {}),
      });
      haraka[name] = proc;
      started.push({ stop: () => proc.stop() });
      await waitForBanner(endpoints[name].host, endpoints[name].port, { process: proc });
      return proc;
    };
    for (const name of options.instances ?? ['haraka-in', 'haraka-out']) await launch(name);

    return {
      config,
      configPath,
      instancesDir,
      dns,
      backend,
      internet,
      haraka,
      inbound,
      outbound,
      async restart(name, signal = 'SIGINT') {
        const proc = haraka[name];
        if (proc) {
          if (signal === 'SIGKILL') {
            proc.child.kill('SIGKILL');
            await proc.exited;
          } else {
            await proc.stop();
          }
        }
        return launch(name);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
