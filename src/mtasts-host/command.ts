// `mailproxy mta-sts serve`: the MTA-STS policy service that mailproxy-mta-sts.service runs. It serves the
// policy of inbound.mta_sts (policy.ts) on its listen addresses (server.ts) with haraka-in's certificate
// (certificate.ts), presents a newly deployed certificate within about a second without a restart, reads
// the config again on SIGHUP (`systemctl reload`), and stops on SIGTERM or SIGINT. Progress goes to stdout,
// one line each (the journal).
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { parseCommandArgs, UsageError } from '../command/usage';
import { formatHostPort, parseHostPort, type HostPort } from '../config/net';
import { mtaStsListen } from '../config/paths';
import type { Config } from '../config/schema';
import { readCertificate, watchCertificate } from './certificate';
import { hostedPolicy, policyHosts } from './policy';
import { startPolicyServer, type PolicyContent, type PolicyServer } from './server';

function listenAddresses(config: Config): HostPort[] {
  return mtaStsListen(config).flatMap((text) => parseHostPort(text) ?? []);
}

function contentOf(config: Config): PolicyContent {
  return { hosts: policyHosts(config), text: hostedPolicy(config).text };
}

function describePolicy(config: Config): string {
  const policy = hostedPolicy(config);
  return `policy id ${policy.id} (mode ${policy.mode}, mx ${policy.mx.join(', ')}, max_age ${policy.maxAge}) for ${policyHosts(config).join(', ')}`;
}

/** Presents the current pair when it differs from `presented`; returns the fingerprint presented afterwards. */
function presentCertificate(server: PolicyServer, config: Config, presented: string | null, log: (line: string) => void): string | null {
  try {
    const pair = readCertificate(config);
    if (pair.fingerprint === presented) return presented;
    server.setCertificate(pair);
    log(`presenting certificate ${pair.fingerprint} (${pair.file}, from ${pair.from})`);
    return pair.fingerprint;
  } catch (err) {
    const keeping = presented ? `keeping certificate ${presented}` : 'TLS handshakes fail until a certificate is deployed';
    log(`warning: ${(err as Error).message}; ${keeping}`);
    return presented;
  }
}

async function runServe(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseCommandArgs({ args, allowPositionals: true, options: { config: { type: 'string' } } });
  if (positionals.length) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  let config = loaded.config;
  if (!config.inbound.mta_sts.enabled) {
    io.stderr.write(`mailproxy mta-sts serve: inbound.mta_sts.enabled is false in ${loaded.source}: there is no policy to serve\n`);
    return 1;
  }
  const log = (line: string) => io.stdout.write(`${line}\n`);
  const listen = listenAddresses(config);
  const server = await startPolicyServer({ listen, content: contentOf(config), certificate: null });
  let presented = presentCertificate(server, config, null, log);
  log(`serving ${describePolicy(config)} on ${server.addresses.map(formatHostPort).join(', ')}`);

  const certificateChanged = () => {
    presented = presentCertificate(server, config, presented, log);
  };
  let stopWatching = watchCertificate(config, certificateChanged);

  // SIGHUP: the config again (a new mode, mx or max_age, and so a new id; other domains), and the
  // certificate. A config that does not load keeps everything as it is.
  const reload = () => {
    const again = loadConfigFile(values.config, io.stderr);
    if (!again) return log('warning: the config does not load (above): keeping the policy served');
    if (!again.config.inbound.mta_sts.enabled) return log('warning: inbound.mta_sts.enabled is now false: keeping the policy served; stop the service (the installer does)');
    config = again.config;
    server.setContent(contentOf(config));
    const wanted = mtaStsListen(config).join(', ');
    if (wanted !== listen.map(formatHostPort).join(', ')) log(`warning: inbound.mta_sts.listen is now ${wanted}: restart the service to listen there`);
    stopWatching();
    stopWatching = watchCertificate(config, certificateChanged);
    presented = presentCertificate(server, config, presented, log);
    log(`reloaded: ${describePolicy(config)}`);
  };
  process.on('SIGHUP', reload);
  let stop: (signal: NodeJS.Signals) => void = () => {};
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    stop = resolve;
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  for (const [name, listener] of [
    ['SIGHUP', reload],
    ['SIGTERM', stop],
    ['SIGINT', stop],
  ] as const)
    process.off(name, listener);
  stopWatching();
  await server.close();
  log(`stopped (${signal})`);
  return 0;
}

async function runMtaStsCommand(args: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'serve') return runServe(rest, io);
  throw new UsageError(`usage: mailproxy mta-sts serve [--config FILE] (got ${sub ?? 'nothing'})`);
}

export const command: Command = {
  name: 'mta-sts',
  usage: [
    {
      synopsis: 'mta-sts serve [--config FILE]',
      about: [
        'the MTA-STS policy service of inbound.mta_sts (its unit runs it):',
        'https://mta-sts.<domain>/.well-known/mta-sts.txt for every domain;',
        'a new certificate is presented without a restart, SIGHUP reads the',
        'config again',
      ],
    },
  ],
  exitStyle: 'plain',
  run: runMtaStsCommand,
};
