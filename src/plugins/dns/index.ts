// mailproxy-dns: points every resolver inside the Haraka process at the configured DNS servers.
// Haraka resolves with node:dns (reverse lookups of clients) and with haraka-net-utils' own Resolver
// (MX and address lookups for outbound); both are set here, once, before the server listens.
import dns from 'node:dns';
import type { HarakaPlugin } from '../haraka/plugin';

interface DnsIni {
  main: { servers?: string };
}

export function register(this: HarakaPlugin): void {
  const cfg = this.config.get('mailproxy-dns.ini', () => applyServers(this)) as DnsIni;
  applyServers(this, cfg);
}

function applyServers(plugin: HarakaPlugin, loaded?: DnsIni): void {
  const cfg = loaded ?? (plugin.config.get('mailproxy-dns.ini') as DnsIni);
  const servers = (cfg.main.servers ?? '')
    .split(',')
    .map((server) => server.trim())
    .filter(Boolean);
  if (servers.length === 0) return;
  dns.setServers(servers);
  dns.promises.setServers(servers);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtilsDns = require('haraka-net-utils/lib/dns_config') as { getDnsResolver(): dns.promises.Resolver };
  netUtilsDns.getDnsResolver().setServers(servers);
  plugin.loginfo(`DNS servers: ${servers.join(', ')}`);
}
