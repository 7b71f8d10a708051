// Pure: what a config still needs outside the VPS (DNS records, the backend's Postfix settings, the
// firewall), spelled out with the config's own names and addresses. The installer prints it at the end;
// `mailproxy notes` prints it any time.
import type { Config } from '../config/schema';
import { parseHostPort } from '../config/net';

function dnsRecords(config: Config): string[] {
  const ips = [`ip4:${config.public_ipv4}`, ...(config.public_ipv6 ? [`ip6:${config.public_ipv6}`] : [])].join(' ');
  const lines = [
    `  ${config.hostname}.  A     ${config.public_ipv4}`,
    ...(config.public_ipv6 ? [`  ${config.hostname}.  AAAA  ${config.public_ipv6}`] : []),
    `  PTR of ${config.public_ipv4} -> ${config.hostname}.   (ask the VPS provider)`,
    ...(config.public_ipv6 ? [`  PTR of ${config.public_ipv6} -> ${config.hostname}.   (ask the VPS provider)`] : []),
  ];
  for (const domain of config.domains) {
    lines.push(`  ${domain}.  MX 10  ${config.hostname}.`, `  ${domain}.  TXT   "v=spf1 ${ips} -all"`);
  }
  return lines;
}

function backendSettings(config: Config): string[] {
  const outbound = parseHostPort(config.outbound.listen);
  return [
    `  main.cf:   smtpd_authorized_xclient_hosts = ${config.wireguard.address}`,
    `  master.cf: an smtpd service (not postscreen) on ${config.backend.host}:${config.backend.port}, e.g.`,
    `             ${config.backend.host}:${config.backend.port} inet n - n - - smtpd`,
    `  main.cf:   relayhost = [${outbound?.host ?? config.outbound.listen}]:${outbound?.port ?? 2526}`,
    `  never put ${config.wireguard.address} in mynetworks`,
  ];
}

function firewall(config: Config): string[] {
  const outbound = parseHostPort(config.outbound.listen);
  return [
    '  table inet mailproxy {',
    '    chain input {',
    '      type filter hook input priority 0; policy accept;',
    '      tcp dport 25 accept',
    `      iifname "${config.wireguard.interface}" tcp dport ${outbound?.port ?? 2526} accept`,
    `      tcp dport ${outbound?.port ?? 2526} drop`,
    '    }',
    '  }',
  ];
}

export function installNotes(config: Config): string {
  return [
    'DNS records to publish (docs: README "DNS you must set"):',
    ...dnsRecords(config),
    '',
    'On the backend (Mailcow / Postfix):',
    ...backendSettings(config),
    '',
    'Firewall (nftables, e.g. /etc/nftables.d/mailproxy.nft): port 25 open to the world, haraka-out only on WireGuard:',
    ...firewall(config),
    '',
  ].join('\n');
}
