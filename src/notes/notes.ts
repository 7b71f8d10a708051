// Pure: what a config still needs outside the VPS (DNS records, the backend's Postfix settings, the
// firewall), spelled out with the config's own names and addresses. The installer prints it at the end;
// `mailproxy notes` prints it any time.
import type { Config } from '../config/schema';
import { parseHostPort } from '../config/net';
import { placeholders, placeholderWarning } from '../config/placeholders';
import { hostedPolicy, policyHosts, policyRecords, policyUrl } from '../mtasts-host/policy';

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

/** With inbound.mta_sts on: the records that announce the policy, and what the service serves. */
function mtaStsRecords(config: Config): string[] {
  if (!config.inbound.mta_sts.enabled) return [];
  const policy = hostedPolicy(config);
  const [first] = config.domains;
  return [
    '',
    `MTA-STS (inbound.mta_sts, mode ${policy.mode}): publish for each domain; the id changes with every change of the policy:`,
    ...policyRecords(config).map((record) => `  ${record.name}.  ${record.type.padEnd(4)}  ${record.type === 'TXT' ? `"${record.value}"` : record.value}`),
    ...(config.inbound.mta_sts.tls_rpt_rua ? [] : ["  (set inbound.mta_sts.tls_rpt_rua to get the _smtp._tls records that bring senders' daily TLS reports)"]),
    `mailproxy-mta-sts.service serves at ${first ? policyUrl(first) : 'https://mta-sts.<domain>/.well-known/mta-sts.txt'} (and each domain's):`,
    ...policy.text
      .trimEnd()
      .split('\r\n')
      .map((line) => `  ${line}`),
    `The certificate must cover ${policyHosts(config).join(', ')} (native ACME adds them; cert deploy says which are missing).`,
  ];
}

function relayhost(config: Config): string {
  const outbound = parseHostPort(config.outbound.listen);
  return `[${outbound?.host ?? config.outbound.listen}]:${outbound?.port ?? 2526}`;
}

/** The smtpd service's options: XCLIENT trusted from the VPS on this port only, Mailcow's own HELO rules.
 * With backend.reuse_sessions, XCLIENT is trusted from every client identity (Postfix checks the list
 * against the identity the previous XCLIENT set), which is safe only because the port is the VPS's alone. */
function serviceOptions(config: Config): string[] {
  const trusted = config.backend.reuse_sessions ? 'static:all' : config.wireguard.address;
  return [`smtpd_authorized_xclient_hosts=${trusted}`, 'smtpd_sasl_auth_enable=no', 'syslog_name=postfix/mailproxy'];
}

/** What backend.reuse_sessions asks of the backend, and why it is safe only on a port the VPS alone reaches. */
function reuseNote(config: Config): string[] {
  if (!config.backend.reuse_sessions) return [];
  const { host, port } = config.backend;
  return [
    `backend.reuse_sessions is on: a backend session carries one client after another, each with its own XCLIENT, and`,
    `Postfix checks smtpd_authorized_xclient_hosts against the identity the previous XCLIENT set, so the service trusts`,
    `XCLIENT from every client (static:all above). Only ${config.wireguard.address} may reach ${host}:${port} (WireGuard, the firewall`,
    `rule above): anyone else who reached it could claim any client address. Without the setting haraka-in still delivers,`,
    `connecting afresh for each client.`,
  ];
}

/**
 * Mailcow as it ships: port 25 is postscreen (no XCLIENT), 10025 a postscreen behind a PROXY header;
 * main.cf is rebuilt at every start and only extra.cf is kept; master.cf is tracked in git and update.sh
 * merges over it, while the executables in data/hooks/postfix/ run at every container start; extra ports
 * are published with docker-compose.override.yml, and Docker-published ports bypass the INPUT chain.
 */
function mailcowSettings(config: Config): string[] {
  const { host, port } = config.backend;
  const service = `${port}/inet`;
  const options = serviceOptions(config).map((option) => `postconf -c /opt/postfix/conf -P '${service}/${option}'`);
  return [
    `Mailcow (mailcow-dockerized), in its directory (e.g. /opt/mailcow-dockerized):`,
    `  1. data/hooks/postfix/mailproxy.sh (chmod +x; runs at every start of the postfix container, so it`,
    `     survives update.sh): an smtpd on port ${port} that trusts XCLIENT from ${config.backend.reuse_sessions ? 'every client identity (backend.reuse_sessions)' : `${config.wireguard.address} only`}`,
    `       #!/bin/sh`,
    `       postconf -c /opt/postfix/conf -M '${service}=${port} inet n - n - - smtpd'`,
    ...options.map((line) => `       ${line}`),
    `  2. docker-compose.override.yml: publish it on the WireGuard address only`,
    `       services:`,
    `         postfix-mailcow:`,
    `           ports:`,
    `             - "${host}:${port}:${port}"`,
    `  3. data/conf/postfix/extra.cf: outbound mail (bounces too) leaves through haraka-out`,
    `       relayhost = ${relayhost(config)}`,
    `  4. the host firewall: Docker-published ports bypass the INPUT chain; only the VPS may reach ${port}`,
    `       iptables -I DOCKER-USER -p tcp -m conntrack --ctorigdst ${host} --ctorigdstport ${port} ! -s ${config.wireguard.address} -j DROP`,
    `  then: docker compose up -d (recreates postfix-mailcow; check: mailproxy health, line "backend")`,
  ];
}

function postfixSettings(config: Config): string[] {
  const { host, port } = config.backend;
  return [
    `Plain Postfix (with its smtpd_tls_cert_file and smtpd_tls_key_file set, for STARTTLS):`,
    `  master.cf:`,
    `    ${host}:${port} inet n - n - - smtpd`,
    ...serviceOptions(config).map((option) => `      -o ${option}`),
    `  main.cf:`,
    `    relayhost = ${relayhost(config)}`,
  ];
}

function backendSettings(config: Config): string[] {
  return [
    ...mailcowSettings(config),
    '',
    ...postfixSettings(config),
    '',
    `Never put ${config.wireguard.address} in mynetworks: the proxy would be allowed to relay anywhere.`,
    ...reuseNote(config),
    ...(config.backend.starttls ? [] : [`backend.starttls is off: Mailcow refuses plaintext for mailboxes with "enforce inbound TLS" (reject_plaintext_session).`]),
  ];
}

function firewall(config: Config): string[] {
  const outbound = parseHostPort(config.outbound.listen);
  return [
    '  table inet mailproxy {',
    '    chain input {',
    '      type filter hook input priority 0; policy accept;',
    '      tcp dport 25 accept',
    ...(config.inbound.mta_sts.enabled ? ['      tcp dport 443 accept'] : []),
    `      iifname "${config.wireguard.interface}" tcp dport ${outbound?.port ?? 2526} accept`,
    `      tcp dport ${outbound?.port ?? 2526} drop`,
    '    }',
    '  }',
  ];
}

/** With outbound.tls_rpt on: the DKIM record that makes emailed reports count (`dkimRecord`: its zone-file
 * line, or null while there is no key yet). */
function tlsReportRecords(config: Config, dkimRecord: string | null): string[] {
  if (!config.outbound.tls_rpt.enabled) return [];
  return [
    '',
    'TLS reports (outbound.tls_rpt): emailed reports are DKIM-signed; publish the key (receivers ignore unsigned reports):',
    dkimRecord ? `  ${dkimRecord}` : '  (no key yet: `mailproxy tls-report key` makes it and prints this record)',
  ];
}

/** `dkimRecord`: the zone-file line of the TLS reports' DKIM key, null when it is not made yet. */
export function installNotes(config: Config, dkimRecord: string | null = null): string {
  const warning = placeholderWarning(placeholders(config));
  const dns = warning
    ? [`Not printed: ${warning}.`]
    : ['DNS records to publish (docs: README "DNS you must set"):', ...dnsRecords(config), ...mtaStsRecords(config), ...tlsReportRecords(config, dkimRecord)];
  return [
    ...dns,
    '',
    `On the backend, haraka-in forwards to ${config.backend.host}:${config.backend.port} (backend.host, backend.port) from ${config.wireguard.address}:`,
    ...backendSettings(config),
    '',
    `Firewall on the VPS (nftables, e.g. /etc/nftables.d/mailproxy.nft): port 25${config.inbound.mta_sts.enabled ? ' and 443 (MTA-STS)' : ''} open to the world, haraka-out only on WireGuard:`,
    ...firewall(config),
    '',
  ].join('\n');
}
