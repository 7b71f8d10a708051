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
      .describe('Seconds to wait for any one backend reply (banner, EHLO, MAIL, RCPT, end of data) before answering 4xx.'),
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
    network: cidr.default('10.0.0.0/24').describe('The WireGuard network; the backend must be inside it.'),
  })
  .prefault({});

const outbound = z
  .strictObject({
    listen: hostPort.default('10.0.0.1:2526').describe('Where haraka-out listens for mail from the backend. Never a public or wildcard address.'),
    relay_acl: z
      .array(cidr)
      .min(1)
      .default(['10.0.0.2/32'])
      .describe('Clients allowed to relay through haraka-out (one CIDR each). Everyone else gets 5xx.'),
    allow_public_relay_acl: z
      .boolean()
      .default(false)
      .describe('Allow relay_acl entries outside private ranges. Leave false unless you know why you need it.'),
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
  state_dir: absolutePath.default('/var/lib/mailproxy').describe('Where the queue and runtime state live.'),
  log_level: z.enum(LOG_LEVELS).default('info').describe('Haraka log level for both instances.'),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
