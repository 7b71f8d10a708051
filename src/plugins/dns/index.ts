// mailproxy-dns: points every resolver inside the Haraka process at the configured DNS servers.
// Haraka resolves with node:dns (reverse lookups of clients) and with haraka-net-utils' own Resolver
// (MX and address lookups for outbound); both are set here, once, before the server listens.
import dns from 'node:dns';
import type { HarakaPlugin } from '../haraka/plugin';
import { readDnsSettings, type DnsSettings } from './settings';

export function register(this: HarakaPlugin): void {
  applyServers(
    this,
    readDnsSettings(this.config, () => applyServers(this, readDnsSettings(this.config))),
  );
}

function applyServers(plugin: HarakaPlugin, { servers }: DnsSettings): void {
  if (servers.length === 0) return;
  dns.setServers(servers);
  dns.promises.setServers(servers);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtilsDns = require('haraka-net-utils/lib/dns_config') as { getDnsResolver(): dns.promises.Resolver };
  netUtilsDns.getDnsResolver().setServers(servers);
  plugin.loginfo(`DNS servers: ${servers.join(', ')}`);
}
