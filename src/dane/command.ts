// `mailproxy dane check DOMAIN` and `mailproxy dane resolver`: what haraka-out's DANE sees, asked of the same
// validating resolver (outbound.dane_resolver, or --resolver).
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { parseHostPort } from '../config/net';
import { formatDaneRoute } from './format';
import { createDnssecResolver } from './resolver';
import { daneRoute } from './route';
import { resolverValidates } from './self-check';

async function runDaneCommand(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string' }, resolver: { type: 'string' }, port: { type: 'string', default: '25' } },
  });
  const [action, domain] = positionals;
  if (action !== 'check' && action !== 'resolver') {
    throw new UsageError('usage: mailproxy dane check DOMAIN | mailproxy dane resolver  [--config FILE | --resolver IP:PORT]');
  }
  let address = values.resolver;
  if (!address) {
    const loaded = loadConfigFile(values.config, io.stderr);
    if (!loaded) return 1;
    // DANE off: haraka-out asks no DNSSEC resolver, so there is none to probe (and none needs to run).
    if (!loaded.config.outbound.dane) {
      io.stdout.write(`${daneOffText(action, loaded.source, loaded.config.outbound.dane_resolver)}\n`);
      return 0;
    }
    address = loaded.config.outbound.dane_resolver;
  }
  const target = parseHostPort(address);
  if (!target) throw new UsageError(`--resolver ${address}: expected ADDRESS:PORT like 127.0.0.1:53`);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port ${values.port}: expected a port number`);
  const resolver = createDnssecResolver(target);
  switch (action) {
    case 'check': {
      if (!domain) throw new UsageError('usage: mailproxy dane check DOMAIN [--config FILE | --resolver IP:PORT] [--port 25]');
      const route = await daneRoute(resolver, domain.toLowerCase().replace(/\.$/, ''), port).catch((error: Error) => ({ kind: 'failed' as const, why: error.message }));
      io.stdout.write(`${formatDaneRoute(domain, route)}\n`);
      return route.kind === 'failed' ? 1 : 0;
    }
    case 'resolver': {
      const result = await resolverValidates(resolver);
      (result.ok ? io.stdout : io.stderr).write(`${target.host}:${target.port}: ${result.text}\n`);
      return result.ok ? 0 : 1;
    }
  }
}

export const command: Command = {
  name: 'dane',
  usage: [
    {
      synopsis: 'dane check DOMAIN [--config FILE | --resolver IP:PORT] [--port 25]',
      about: [
        'the DANE verdict haraka-out applies to DOMAIN: each MX host and the',
        'TLS it gets (dane, encrypt, opportunistic, skipped); exit 1 when the',
        'lookups fail (mail for it waits)',
      ],
    },
    {
      synopsis: 'dane resolver [--config FILE | --resolver IP:PORT]',
      about: ["whether outbound.dane_resolver validates DNSSEC (the root's AD bit)"],
    },
  ],
  exitStyle: 'plain',
  run: runDaneCommand,
};

/** What `dane resolver|check` says instead of probing when the config turns DANE off. */
export function daneOffText(action: 'check' | 'resolver', source: string, resolver: string): string {
  const off = `DANE is off (outbound.dane: false in ${source})`;
  if (action === 'resolver') {
    return `${off}: haraka-out asks no DNSSEC-validating resolver, so ${resolver} was not probed; set outbound.dane: true to use one, or pass --resolver IP:PORT to probe one anyway`;
  }
  return `${off}: haraka-out applies no DANE to any domain, only MTA-STS or opportunistic TLS; pass --resolver IP:PORT to see a domain's DANE records anyway`;
}
