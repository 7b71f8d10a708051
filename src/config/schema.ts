// The one schema of the appliance's config file: every key, its type, bounds, default and doc line.
// docs/CONFIG.md is generated from this file (`mailproxy config docs`), and a test keeps the two equal.
import { z } from 'zod';
import { isFqdn, parseCidr, parseHostPort, parseIp } from './net';

const ip = z.string().refine((text) => parseIp(text) !== null, { message: 'expected an IPv4 or IPv6 address' });
const ipv4 = z.string().refine((text) => parseIp(text)?.kind() === 'ipv4', { message: 'expected an IPv4 address like 203.0.113.25' });
const ipv6 = z.string().refine((text) => parseIp(text)?.kind() === 'ipv6', { message: 'expected an IPv6 address like 2001:db8::25' });
const cidr = z.string().refine((text) => parseCidr(text) !== null, { message: 'expected a CIDR like 10.0.0.2/32' });
const hostPort = z
  .string()
  .refine((text) => parseHostPort(text) !== null, { message: 'expected ADDRESS:PORT like 10.0.0.1:2526 or [2001:db8::1]:25' });
const fqdn = z.string().refine(isFqdn, { message: 'expected a fully qualified domain name like mx.example.com' });
const port = z.number().int().min(1).max(65535);
const seconds = (min: number, max: number) => z.number().min(min).max(max);
const absolutePath = z.string().refine((text) => text.startsWith('/'), { message: 'expected an absolute path' });

export const LOG_LEVELS = ['data', 'protocol', 'debug', 'info', 'notice', 'warn', 'error', 'crit'] as const;

const inbound = z
  .strictObject({
    listen: z
      .array(hostPort)
      .default([])
      .describe('Addresses haraka-in listens on. Empty: port 25 on public_ipv4 (and public_ipv6 when set).'),
    max_message_size: z
      .number()
      .int()
      .min(1024)
      .max(200 * 1024 * 1024)
      .default(26214400)
      .describe('Largest message accepted, in bytes (advertised as SIZE; larger messages get 552).'),
    inactivity_timeout: seconds(10, 3600)
      .default(300)
      .describe('Seconds a client may stay silent before haraka-in closes the connection.'),
  })
  .prefault({});

const backend = z
  .strictObject({
    host: ip.default('10.0.0.2').describe('Address of the mail server (Mailcow) on the WireGuard network.'),
    port: port.default(25).describe('SMTP port of the mail server; must not be behind postscreen (XCLIENT needs smtpd).'),
    connect_timeout: seconds(0.1, 60)
      .default(2)
      .describe('Seconds to wait for the backend to accept a connection before answering the sender 4xx.'),
    timeout: seconds(1, 600)
      .default(60)
      .describe('Seconds to wait for any one backend reply (banner, EHLO, XCLIENT, MAIL, RCPT, DATA) before answering 4xx.'),
    data_timeout: seconds(10, 3600)
      .default(600)
      .describe(
        'Seconds to wait for the backend’s reply after the end of data, while its content filters run (RFC 5321 §4.5.3.2.6, Postfix’s smtp_data_done_timeout). Giving up earlier answers the sender 4xx while the backend may still deliver: a duplicate when the sender retries.',
      ),
    keepalive: seconds(1, 300)
      .default(4)
      .describe(
        'Seconds of quiet after which haraka-in sends NOOP to the backend while a transaction waits for its client (between RCPTs, or during a slow upload), so the backend’s idle timeout (Postfix’s smtpd_timeout: 300 s, 10 s under stress) does not end it.',
      ),
    require_xclient: z
      .boolean()
      .default(true)
      .describe('Refuse (4xx) rather than forward without XCLIENT, which would show the backend the proxy’s address instead of the sender’s.'),
    starttls: z
      .boolean()
      .default(false)
      .describe('Use STARTTLS to the backend (certificate not verified), and refuse (4xx) when it is not offered. WireGuard already encrypts the path.'),
    rdns_timeout: seconds(0.1, 30)
      .default(3)
      .describe('Seconds to spend finding the client’s forward-confirmed reverse DNS name for XCLIENT NAME; then [TEMPUNAVAIL].'),
  })
  .prefault({});

const wireguard = z
  .strictObject({
    address: ip.default('10.0.0.1').describe("The VPS's WireGuard address: haraka-in forwards from it; haraka-out listens on it."),
    network: cidr
      .default('10.0.0.0/24')
      .describe('The WireGuard network; the backend and outbound.relay_acl must be inside it. Loopback only in the single-host test rig (the demo).'),
    interface: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,15}$/, { message: 'expected a network interface name like wg0' })
      .default('wg0')
      .describe('The WireGuard interface (wg-quick@<interface>.service): haraka-out starts after it, and `health` reads its last handshake.'),
  })
  .prefault({});

const outbound = z
  .strictObject({
    listen: hostPort.default('10.0.0.1:2526').describe('Where haraka-out listens for mail from the backend. Never a public or wildcard address.'),
    relay_acl: z
      .array(cidr)
      .min(1)
      .default(['10.0.0.2/32'])
      .describe(
        'Clients allowed to relay through haraka-out (one CIDR each), inside wireguard.network and never the VPS itself (wireguard.address, loopback). Everyone else gets 5xx.',
      ),
    allow_public_relay_acl: z
      .boolean()
      .default(false)
      .describe('Allow relay_acl entries outside wireguard.network and outside private ranges. Leave false unless you know why you need it.'),
    allow_local_relay_acl: z
      .boolean()
      .default(false)
      .describe(
        'Allow relay_acl entries that cover the VPS itself (wireguard.address, the public addresses, loopback), so that every process on the VPS may relay. Leave false unless you know why you need it.',
      ),
    concurrency: z.number().int().min(1).max(1000).default(20).describe('Most deliveries haraka-out runs at once.'),
    retry_intervals: z
      .array(z.number().int().min(5).max(86400))
      .min(1)
      .default([60, 300, 900, 1800, 3600, 7200, 14400, 28800])
      .describe('Seconds to wait before each retry of a temporarily failed delivery; the last one repeats until max_queue_lifetime (Haraka needs at least 5).'),
    max_queue_lifetime: z
      .number()
      .int()
      .min(0)
      .max(30 * 86400)
      .default(5 * 86400)
      .describe('Seconds a message may stay queued (Postfix’s default: 5 days); then the sender gets a bounce. 0: no retries.'),
    allow_local_mx: z
      .boolean()
      .default(false)
      .describe('Deliver to MX hosts at this machine’s own or loopback addresses. Only loopback test rigs need it.'),
    mta_sts: z
      .boolean()
      .default(true)
      .describe('Honour recipient domains’ MTA-STS policies (RFC 8461): in enforce mode deliver only over verified TLS to the MX hosts the policy names.'),
    mta_sts_port: port
      .default(443)
      .describe('HTTPS port of MTA-STS policy hosts. Always 443 on the internet; test rigs use another.'),
    mx_port: port
      .default(25)
      .describe('Port of the MX servers haraka-out delivers to. Always 25 on the internet; test rigs use another.'),
  })
  .prefault({});

const dnsServer = z
  .string()
  .refine((text) => parseIp(text) !== null || parseHostPort(text) !== null, {
    message: 'expected ADDRESS or ADDRESS:PORT like 127.0.0.53 or [::1]:53',
  });

const dns = z
  .strictObject({
    servers: z
      .array(dnsServer)
      .default([])
      .describe('DNS servers both instances ask (MX, address and reverse lookups). Empty: the system resolver.'),
  })
  .prefault({});

const tls = z
  .strictObject({
    key: absolutePath.default('/etc/mailproxy/tls/privkey.pem').describe('Private key of the certificate for hostname (PEM).'),
    cert: absolutePath.default('/etc/mailproxy/tls/fullchain.pem').describe('Certificate for hostname with its chain (PEM).'),
  })
  .prefault({});

const unitName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, { message: 'expected a system user name like mailproxy' });

const system = z
  .strictObject({
    user: unitName.default('mailproxy').describe('The unprivileged user (and group) both Haraka instances run as.'),
    node: absolutePath
      .default('/usr/bin/node')
      .describe('The Node.js binary the units run (Node 22 or newer; the installer checks it).'),
    app_dir: absolutePath.default('/opt/mailproxy').describe('Where the installer puts mailproxy (its node_modules hold Haraka and the plugins).'),
    instances_dir: absolutePath
      .default('/etc/mailproxy/instances')
      .describe('Where `render` writes the two Haraka instance directories on the VPS, and where the units run them from.'),
    units_dir: absolutePath.default('/etc/systemd/system').describe('Where the installer writes the systemd units.'),
    memory_max_in: z
      .number()
      .int()
      .min(128)
      .max(4096)
      .default(320)
      .describe('MemoryMax= of haraka-in in MB: the kernel stops it beyond this (it restarts). Measured peaks are in docs/BENCHMARKS.md.'),
    memory_max_out: z
      .number()
      .int()
      .min(128)
      .max(4096)
      .default(256)
      .describe('MemoryMax= of haraka-out in MB.'),
  })
  .prefault({});

// `mailproxy health`: its time budget and thresholds. Each pair is checked warning-before-critical, so a
// warning threshold beyond its critical one would never fire: refused.
const healthPairs = [
  ['queue_warning', 'queue_critical', 'at most'],
  ['oldest_warning', 'oldest_critical', 'at most'],
  ['handshake_warning', 'handshake_critical', 'at most'],
  ['disk_warning_mb', 'disk_critical_mb', 'at least'],
] as const;

const health = z
  .strictObject({
    smtp_timeout: seconds(0.5, 60)
      .default(5)
      .describe(
        'Seconds `mailproxy health` waits for each step of its SMTP probes (connect, banner, EHLO, STARTTLS, TLS handshake) to haraka-in, haraka-out and the backend; slower is CRITICAL.',
      ),
    cert_warning_days: z
      .number()
      .int()
      .min(1)
      .max(365)
      .default(14)
      .describe('WARNING when the certificate haraka-in serves over STARTTLS has fewer days left than this; an expired or not yet valid one is CRITICAL.'),
    queue_warning: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(50)
      .describe('WARNING when haraka-out’s queue holds at least this many messages.'),
    queue_critical: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(500)
      .describe('CRITICAL when haraka-out’s queue holds at least this many messages.'),
    oldest_warning: seconds(60, 60 * 86400)
      .default(6 * 3600)
      .describe('WARNING when the oldest message in haraka-out’s queue has waited this many seconds (6 h).'),
    oldest_critical: seconds(60, 60 * 86400)
      .default(86400)
      .describe('CRITICAL when the oldest message in haraka-out’s queue has waited this many seconds (1 day; it bounces at outbound.max_queue_lifetime).'),
    handshake_warning: seconds(30, 30 * 86400)
      .default(300)
      .describe(
        'WARNING when the latest WireGuard handshake with the backend’s peer is older than this many seconds. WireGuard renews keys every 2 minutes while packets flow and drops them after 180 s; health probes the backend first, so even an idle tunnel has just handshaken.',
      ),
    handshake_critical: seconds(30, 30 * 86400)
      .default(900)
      .describe('CRITICAL when the latest WireGuard handshake with the backend’s peer is older than this many seconds, or never happened.'),
    disk_warning_mb: z
      .number()
      .int()
      .min(1)
      .max(100_000_000)
      .default(1024)
      .describe('WARNING when the file system of state_dir has less than this many MB free (as an unprivileged user sees it).'),
    disk_critical_mb: z
      .number()
      .int()
      .min(1)
      .max(100_000_000)
      .default(256)
      .describe('CRITICAL when the file system of state_dir has less than this many MB free: the queue and spool stop taking mail.'),
  })
  .superRefine((value, ctx) => {
    for (const [warning, critical, relation] of healthPairs) {
      const ok = relation === 'at most' ? value[warning] <= value[critical] : value[warning] >= value[critical];
      if (!ok) {
        ctx.addIssue({
          code: 'custom',
          path: [warning],
          input: value[warning],
          message: `expected ${relation} health.${critical} (${value[critical]}): the warning comes before the critical threshold`,
        });
      }
    }
  })
  .prefault({});

export const configSchema = z.strictObject({
  version: z.literal(1).describe('Format version of this file. Always 1.'),
  hostname: fqdn.describe("The VPS's public name: SMTP banner and HELO. Must equal the PTR of the public IPs."),
  public_ipv4: ipv4.describe("The VPS's public IPv4 address."),
  public_ipv6: ipv6.optional().describe("The VPS's public IPv6 address, if it has one."),
  domains: z.array(fqdn).min(1).describe('Domains haraka-in accepts mail for; everything else is refused with 5xx.'),
  inbound,
  backend,
  wireguard,
  outbound,
  tls,
  dns,
  system,
  health,
  state_dir: absolutePath.default('/var/lib/mailproxy').describe('Where the queue and runtime state live.'),
  log_level: z.enum(LOG_LEVELS).default('info').describe('Haraka log level for both instances.'),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
