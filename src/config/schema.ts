// The one schema of the appliance's config file: every key, its type, bounds, default and doc line.
// docs/CONFIG.md is generated from this file (`mailproxy config docs`), and a test keeps the two equal.
import { z } from 'zod';
import { isFqdn, isLoopbackIp, parseAnswerRange, parseCidr, parseHostPort, parseIp } from './net';

const ip = z.string().refine((text) => parseIp(text) !== null, { message: 'expected an IPv4 or IPv6 address' });
const ipv4 = z.string().refine((text) => parseIp(text)?.kind() === 'ipv4', { message: 'expected an IPv4 address like 203.0.113.25' });
const ipv6 = z.string().refine((text) => parseIp(text)?.kind() === 'ipv6', { message: 'expected an IPv6 address like 2001:db8::25' });
const cidr = z.string().refine((text) => parseCidr(text) !== null, { message: 'expected a CIDR like 10.0.0.2/32' });
const hostPort = z.string().refine((text) => parseHostPort(text) !== null, { message: 'expected ADDRESS:PORT like 10.0.0.1:2526 or [2001:db8::1]:25' });
const fqdn = z.string().refine(isFqdn, { message: 'expected a fully qualified domain name like mx.example.com' });
const port = z.number().int().min(1).max(65535);
const seconds = (min: number, max: number) => z.number().min(min).max(max);
const absolutePath = z.string().refine((text) => text.startsWith('/'), { message: 'expected an absolute path' });

export const LOG_LEVELS = ['data', 'protocol', 'debug', 'info', 'notice', 'warn', 'error', 'crit'] as const;

// Backup MX: haraka-in keeps mail for recipients the backend has already accepted while the backend cannot
// be reached, and hands it on when it answers again.
const storeAndForward = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'While the backend cannot be reached (connection refused or timed out, the WireGuard address missing), accept mail for recipients the backend accepted before, keep it on the VPS’s disk and hand it on when the backend answers again. Off: haraka-in keeps no mail at rest and answers 4xx while the backend is away.',
      ),
    max_disk_mb: z
      .number()
      .int()
      .min(10)
      .max(1_000_000)
      .default(1024)
      .describe('Most MB of mail kept while the backend is away; over it new mail gets 452 4.3.1 and the sender retries later.'),
    max_age_days: z
      .number()
      .min(1)
      .max(30)
      .default(5)
      .describe('Days a kept message is retried; then it is bounced to a sender whose SPF passed, else held (Postfix’s maximal_queue_lifetime).'),
    drain_sessions: z
      .number()
      .int()
      .min(1)
      .max(10)
      .default(2)
      .describe('Backend sessions that hand kept mail on at once, besides the live ones (limits.max_backend_sessions leaves room for them).'),
    probe_interval: seconds(1, 300).default(5).describe('Seconds between checks that the backend answers again while mail is kept or the backend is away.'),
    cache_size: z
      .number()
      .int()
      .min(100)
      .max(1_000_000)
      .default(20_000)
      .describe(
        'Most addresses the recipient cache keeps: what the backend answered to each RCPT (accepted: 31 days, refused: 3 days, after Postfix’s verify(8)). Only cached-accepted recipients are accepted while the backend is away.',
      ),
  })
  .prefault({});

// MTA-STS policy hosting (RFC 8461): mailproxy-mta-sts.service serves the policy of every domain from the VPS,
// which holds the public MX and its certificate. Off by default: nothing listens on 443 then.
export const MTA_STS_MODES = ['testing', 'enforce', 'none'] as const;

const mxPattern = z.string().refine((text) => isFqdn(text.startsWith('*.') ? text.slice(2) : text), {
  message: 'expected an MX host name like mx2.example.com, or a wildcard like *.example.net',
});

const tlsRptAddress = z.string().refine((text) => text === '' || z.email().safeParse(text).success || /^https:\/\/[^\s,!;]+$/.test(text), {
  message: 'expected an email address like tls-reports@example.com, an https:// URL, or nothing',
});

const mtaStsHosting = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Serve an MTA-STS policy for every domain at `https://mta-sts.<domain>/.well-known/mta-sts.txt` (mailproxy-mta-sts.service, port 443), so that senders that support RFC 8461 deliver to haraka-in only over verified TLS. `mailproxy notes` prints the DNS records to publish; the certificate must cover `mta-sts.<domain>` of every domain (native ACME adds those names). False: no unit, nothing listens on 443.',
      ),
    mode: z
      .enum(MTA_STS_MODES)
      .default('testing')
      .describe(
        'The policy’s mode: `testing` (senders deliver as before and report TLS failures; start here), `enforce` (senders deliver only over TLS with a certificate valid for an mx name; `check` refuses it while the STARTTLS certificate does not cover hostname) or `none` (withdraws the policy: publish it until every sender’s cached copy has expired).',
      ),
    mx: z
      .array(mxPattern)
      .default([])
      .describe(
        'MX names the policy allows besides hostname (always the first mx: line): a backup MX, or a wildcard like *.example.net. Every MX record of every domain must match one.',
      ),
    max_age: z
      .number()
      .int()
      .min(86_400)
      .max(31_557_600)
      .default(604_800)
      .describe('Seconds senders may cache the policy (one week). RFC 8461 allows up to a year; senders keep a cached policy this long even when the service is down.'),
    listen: z.array(hostPort).default([]).describe('Addresses the policy service listens on. Empty: port 443 on public_ipv4 (and public_ipv6 when set).'),
    tls_rpt_rua: tlsRptAddress
      .default('')
      .describe(
        'Where senders send their daily TLS reports about mail to your domains (RFC 8460): an email address or an https:// URL. `mailproxy notes` then prints each domain’s `_smtp._tls` record with it. Empty: no TLS-RPT record is suggested.',
      ),
  })
  .prefault({});

const inbound = z
  .strictObject({
    listen: z.array(hostPort).default([]).describe('Addresses haraka-in listens on. Empty: port 25 on public_ipv4 (and public_ipv6 when set).'),
    max_message_size: z
      .number()
      .int()
      .min(1024)
      .max(200 * 1024 * 1024)
      .default(26214400)
      .describe('Largest message accepted, in bytes (advertised as SIZE; larger messages get 552).'),
    inactivity_timeout: seconds(10, 3600).default(300).describe('Seconds a client may stay silent before haraka-in closes the connection.'),
    max_recipients: z
      .number()
      .int()
      .min(100)
      .max(10000)
      .default(100)
      .describe(
        'Most recipients one message may have; each one past it gets 452 4.5.3 and the sender delivers those in another transaction (RFC 5321 §4.5.3.1.10). 100 is the least RFC 5321 lets a server take (§4.5.3.1.8). Each recipient is checked by the backend while the client waits.',
      ),
    store_and_forward: storeAndForward,
    mta_sts: mtaStsHosting,
  })
  .prefault({});

const backend = z
  .strictObject({
    host: ip.default('10.0.0.2').describe('Address of the mail server (Mailcow) on the WireGuard network.'),
    port: port
      .default(10029)
      .describe(
        'SMTP port of the mail server’s smtpd that trusts XCLIENT from wireguard.address: never postscreen (Mailcow’s 25, and 10025, which expects a PROXY header), which does not implement XCLIENT. 10029 is free in every Mailcow release (10026 held zeyple on 127.0.0.1 in older ones).',
      ),
    connect_timeout: seconds(0.1, 60).default(2).describe('Seconds to wait for the backend to accept a connection before answering the sender 4xx.'),
    timeout: seconds(1, 600).default(60).describe('Seconds to wait for any one backend reply (banner, EHLO, XCLIENT, MAIL, RCPT, DATA) before answering 4xx.'),
    data_timeout: seconds(10, 3600)
      .default(600)
      .describe(
        'Seconds to wait for the backend’s reply after the end of data, while its content filters run (RFC 5321 §4.5.3.2.6, Postfix’s smtp_data_done_timeout). Giving up earlier answers the sender 4xx while the backend may still deliver: a duplicate when the sender retries.',
      ),
    keepalive: seconds(0, 300)
      .default(0)
      .describe(
        'Seconds of quiet after which haraka-in sends NOOP to the backend while a transaction waits for its client. 0 (the default): none; a backend session the backend closed meanwhile (Postfix’s smtpd_timeout: 300 s, 10 s under stress) is replayed at the end of data or the next RCPT (MAIL and every recipient accepted so far, in a new session), since Postfix under stress counts NOOPs against smtpd_junk_command_limit (1).',
      ),
    require_xclient: z
      .boolean()
      .default(true)
      .describe('Refuse (4xx) rather than forward without XCLIENT, which would show the backend the proxy’s address instead of the sender’s.'),
    starttls: z
      .boolean()
      .default(true)
      .describe(
        'Use STARTTLS to the backend (certificate not verified: WireGuard authenticates the path), and refuse (4xx) when it is not offered. Mailcow refuses plaintext sessions for mailboxes with “enforce inbound TLS” (reject_plaintext_session), whatever the tunnel.',
      ),
    rdns_timeout: seconds(0.1, 30).default(3).describe('Seconds to spend finding the client’s forward-confirmed reverse DNS name for XCLIENT NAME; then [TEMPUNAVAIL].'),
    reuse_sessions: z
      .boolean()
      .default(false)
      .describe(
        'Keep a client’s backend session, idle and clean after its last message, for the next client session (up to 8, each idle at most 8 s and used for at most 60 s): the next client sends XCLIENT with its own identity and its own HELO or EHLO in it instead of connecting, greeting and STARTTLS. The backend’s smtpd must then authorize XCLIENT for every client identity, because Postfix checks smtpd_authorized_xclient_hosts against the identity the previous XCLIENT set and refuses the second one (550 5.7.0 insufficient authorization): `-o smtpd_authorized_xclient_hosts=static:all` on a listener that only the VPS can reach (WireGuard address, firewall), never on one the internet or the LAN reaches, where anyone could claim any client address. Without that setting nothing breaks: the refused XCLIENT makes haraka-in close the kept session and connect afresh.',
      ),
  })
  .prefault({});

// Limits that protect the backend and the VPS (haraka-in: mailproxy-limits, and mailproxy-forward for the
// backend sessions). Every refusal is 421 and closes the session; a real MTA queues the message and retries
// later (Postfix first after 5 minutes, for days), so a client over a limit is delayed, never bounced.
const limits = z
  .strictObject({
    max_clients: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1500)
      .describe(
        'Client sessions haraka-in holds at once, over all addresses; one more gets 421 4.7.0 at connect. Bounds the memory and file descriptors the internet can take: an idle session costs haraka-in about 7 KB, one after STARTTLS about 90 KB (docs/BENCHMARKS.md), so 1,500 sessions stay near 220 MB, under system.memory_max_in (320 MB) with room for the sessions that carry mail, and far above what a small site’s senders hold at once.',
      ),
    max_clients_per_ip: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(10)
      .describe(
        'Client sessions at once from one address (an IPv6 client: its /64); one more gets 421 4.7.0 at connect. 0: no limit. A fifth of max_backend_sessions, so one address never holds the whole backend; a sending Postfix starts at 5 connections per destination (initial_destination_concurrency) and backs off on 421.',
      ),
    max_connect_rate_per_ip: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(60)
      .describe(
        'New connections a minute from one address (an IPv6 client: its /64), as a bucket that holds a minute’s worth: a burst of this many, then one every 60/N seconds; over it, 421 4.7.0 at connect. 0: no limit. A sender reuses its connections for many messages; one connection a second on average is far above what a legitimate one opens, and stops a client that reconnects in a loop.',
      ),
    max_backend_sessions: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(50)
      .describe(
        'Backend sessions (smtpd processes at the backend) haraka-in holds at once. A client session opens one at its first accepted domain; over the cap it gets 421 4.7.0 and no backend connection is made. Keep it well below the process limit of the backend’s XCLIENT service (Postfix: default_process_limit, 100, or the maxproc column in master.cf): haraka-out’s deliveries to the backend and `mailproxy health` need processes there too, and Postfix that runs out of processes makes new connections wait for a banner.',
      ),
    max_backend_sessions_per_network: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(10)
      .describe(
        'Backend sessions haraka-in holds at once for the clients of one network (IPv4 /24, IPv6 /48); one more gets 421 4.7.0 and no backend connection. A fifth of max_backend_sessions, so a handful of addresses from one network cannot hold every backend session while other senders wait.',
      ),
    max_session_time: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(900)
      .describe(
        'Seconds a client session may last; then it gets 421 4.4.2 and is closed (never while a message is being handed to the backend). 0: no limit. Stops slow-drip clients that send a byte before each inactivity timeout and would hold a backend session for ever. 15 minutes: a sending Postfix reuses a connection for at most 300 s (smtp_connection_reuse_time_limit), and a 25 MB message (inbound.max_message_size) takes about 400 s to upload at 64 KB/s.',
      ),
    exempt: z
      .array(cidr)
      .default([])
      .describe(
        'Client addresses (CIDRs) the per-address limits leave alone, e.g. a partner that sends in bulk; they still count towards max_clients and max_backend_sessions. Empty by default: private and loopback addresses are limited like any other (unlike Haraka’s own edge plugins).',
      ),
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

const tlsRpt = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Send SMTP TLS reports (RFC 8460): haraka-out counts, per day, how TLS went with each recipient domain that has a DANE or MTA-STS policy, and `mailproxy tls-report send` (daily, by the mailproxy-tls-report timer) reports each day to the domains that publish `_smtp._tls` (mailto: through haraka-out’s queue, https: by POST).',
      ),
    organization: z.string().max(200).default('').describe('organization-name in the reports. Empty: hostname.'),
    contact: z.string().max(200).default('').describe('contact-info in the reports: where a domain owner can ask about them. Empty: postmaster@ the first of domains.'),
    from: z
      .string()
      .max(254)
      .refine((text) => text === '' || (/^[!-~]+@[!-~]+$/.test(text) && /^[^@<>]+@[^@<>]+$/.test(text)), { message: 'expected an ASCII email address like tlsrpt@example.org' })
      .default('')
      .describe('The From address of emailed reports (they go with the null envelope sender, so that none bounces back). Empty: postmaster@ the first of domains.'),
    dkim_selector: z
      .string()
      .regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, { message: 'expected one DNS label like tlsrpt' })
      .default('tlsrpt')
      .describe(
        'DKIM selector of emailed reports, which are signed at the From address’s domain (receivers ignore unsigned reports, RFC 8460 §5.3). The key is made on first use in haraka-out’s state; `mailproxy tls-report key` prints the `<selector>._domainkey` record to publish. A new selector makes a new key.',
      ),
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
    allow_local_mx: z.boolean().default(false).describe('Deliver to MX hosts at this machine’s own or loopback addresses. Only loopback test rigs need it.'),
    allow_private_mx: z
      .boolean()
      .default(false)
      .describe(
        'Deliver to MX addresses inside wireguard.network or in private space (RFC 1918, loopback, link-local, ULA, carrier-grade NAT). Off: such an address is skipped, and a domain that has no other stays queued with the reason, so that a hostile or broken MX record never makes haraka-out connect into the tunnel from the address the backend trusts. Only loopback test rigs and private partner networks need it.',
      ),
    mta_sts: z
      .boolean()
      .default(true)
      .describe('Honour recipient domains’ MTA-STS policies (RFC 8461): in enforce mode deliver only over verified TLS to the MX hosts the policy names.'),
    mta_sts_port: port.default(443).describe('HTTPS port of MTA-STS policy hosts. Always 443 on the internet; test rigs use another.'),
    dane: z
      .boolean()
      .default(true)
      .describe(
        'DANE for outbound TLS (RFC 7672, Postfix’s `dane` level): to an MX whose DNSSEC-signed TLSA records say so, deliver only over STARTTLS with a certificate that matches them, else keep the message queued. Comes before MTA-STS. Needs the validating resolver at dane_resolver (the installer sets up unbound).',
      ),
    dane_resolver: hostPort
      .refine((text) => isLoopbackIp(parseHostPort(text)?.host ?? ''), {
        message: 'expected a loopback ADDRESS:PORT like 127.0.0.1:53: an AD bit is only trusted from a resolver on this host',
      })
      .default('127.0.0.1:53')
      .describe('The DNSSEC-validating resolver haraka-out asks for DANE (MX, address and TLSA records, with their AD bit). Loopback only.'),
    mx_port: port.default(25).describe('Port of the MX servers haraka-out delivers to. Always 25 on the internet; test rigs use another.'),
    tls_rpt: tlsRpt,
    hide_internal_received: z
      .boolean()
      .default(true)
      .describe(
        'haraka-out’s Received line names only the VPS (`by <hostname> with ESMTP id …; <date>`): no backend HELO name, WireGuard address or Haraka version. Earlier Received lines are kept. false: Haraka’s own Received line.',
      ),
  })
  .prefault({});

const dnsServer = z.string().refine((text) => parseIp(text) !== null || parseHostPort(text) !== null, {
  message: 'expected ADDRESS or ADDRESS:PORT like 127.0.0.53 or [::1]:53',
});

const dns = z
  .strictObject({
    servers: z.array(dnsServer).default([]).describe('DNS servers both instances ask (MX, address and reverse lookups). Empty: the system resolver.'),
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
    node: absolutePath.default('/usr/bin/node').describe('The Node.js binary the units run (Node 22 or newer; the installer checks it).'),
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
    memory_max_out: z.number().int().min(128).max(4096).default(256).describe('MemoryMax= of haraka-out in MB.'),
    memory_max_mta_sts: z
      .number()
      .int()
      .min(96)
      .max(1024)
      .default(128)
      .describe('MemoryMax= of the MTA-STS policy service (inbound.mta_sts) in MB; it stays near 90 MB under load (the whole `mailproxy` command is loaded).'),
  })
  .prefault({});

// `mailproxy health`: its time budget and thresholds. Each pair is checked warning-before-critical, so a
// warning threshold beyond its critical one would never fire: refused.
const healthPairs = [
  ['queue_warning', 'queue_critical', 'at most'],
  ['oldest_warning', 'oldest_critical', 'at most'],
  ['handshake_warning', 'handshake_critical', 'at most'],
  ['disk_warning_mb', 'disk_critical_mb', 'at least'],
  ['kept_warning', 'kept_critical', 'at most'],
  ['kept_oldest_warning', 'kept_oldest_critical', 'at most'],
  ['held_warning', 'held_critical', 'at most'],
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
    queue_warning: z.number().int().min(1).max(10_000_000).default(50).describe('WARNING when haraka-out’s queue holds at least this many messages.'),
    queue_critical: z.number().int().min(1).max(10_000_000).default(500).describe('CRITICAL when haraka-out’s queue holds at least this many messages.'),
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
    kept_warning: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100)
      .describe('With inbound.store_and_forward on: WARNING when haraka-in keeps at least this many messages for the backend (`mailproxy queue list --instance in`).'),
    kept_critical: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(1000)
      .describe('With inbound.store_and_forward on: CRITICAL when haraka-in keeps at least this many messages for the backend.'),
    kept_oldest_warning: seconds(60, 60 * 86400)
      .default(3600)
      .describe(
        'With inbound.store_and_forward on: WARNING when the oldest message haraka-in keeps for the backend has waited this many seconds (1 h: the backend has been away that long, or refuses to take it with 4xx).',
      ),
    kept_oldest_critical: seconds(60, 60 * 86400)
      .default(86400)
      .describe(
        'With inbound.store_and_forward on: CRITICAL when the oldest kept message has waited this many seconds (1 day; it is held at inbound.store_and_forward.max_age_days).',
      ),
    held_warning: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(1)
      .describe(
        'With inbound.store_and_forward on: WARNING when at least this many kept messages are held (refused by the backend, or too old): a human decides, with `mailproxy queue held`, `release` or `delete`.',
      ),
    held_critical: z.number().int().min(1).max(10_000_000).default(20).describe('With inbound.store_and_forward on: CRITICAL when at least this many kept messages are held.'),
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

// Native ACME (`mailproxy cert issue|renew`, acme-client): the appliance gets the certificate for hostname
// itself instead of from acme.sh. Off by default: `cert renew` (run by mailproxy-cert-renew.timer) then
// does nothing, and whatever fills tls.key/tls.cert (the acme.sh hook) stays in charge.
export const ACME_DIRECTORIES = {
  letsencrypt: 'https://acme-v02.api.letsencrypt.org/directory',
  'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory',
} as const;

const acmeDirectory = z.string().refine((text) => Object.hasOwn(ACME_DIRECTORIES, text) || /^https:\/\/[^\s/]+(\/\S*)?$/.test(text), {
  message: 'expected letsencrypt, letsencrypt-staging or the https:// URL of an ACME directory',
});

const acme = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        'Get the certificate for hostname with native ACME: `mailproxy cert issue` once, then `mailproxy cert renew` from mailproxy-cert-renew.timer, each handing the result to the same deploy path as `cert deploy`. False: `cert renew` does nothing (acme.sh or you provide tls.key and tls.cert).',
      ),
    directory: acmeDirectory
      .default('letsencrypt')
      .describe(
        'The ACME server: `letsencrypt` (https://acme-v02.api.letsencrypt.org/directory), `letsencrypt-staging` (https://acme-staging-v02.api.letsencrypt.org/directory: certificates nobody trusts, generous rate limits; try a new setup there first, with its root in trusted_cas) or the https URL of any ACME directory.',
      ),
    email: z
      .string()
      .refine((text) => text === '' || z.email().safeParse(text).success, { message: 'expected an email address like postmaster@example.com, or nothing' })
      .default('')
      .describe('Contact address of the ACME account (the CA’s notices). Empty: none.'),
    extra_names: z
      .array(fqdn)
      .default([])
      .describe(
        'Names the certificate covers besides hostname (each must pass the challenge: point at this VPS for http-01, live in an IONOS zone for dns-01). With inbound.mta_sts on, `mta-sts.<domain>` of every domain is added without being listed here.',
      ),
    challenge: z
      .enum(['http-01', 'dns-01'])
      .default('http-01')
      .describe('How the CA checks that the names are ours: `http-01` (an HTTP request to port 80 of each name) or `dns-01` (a TXT record made through the DNS provider).'),
    http_01: z
      .strictObject({
        mode: z
          .enum(['standalone', 'webroot'])
          .default('standalone')
          .describe(
            '`standalone`: `cert issue|renew` listens on http_01.port itself while the CA checks. `webroot`: a web server already owns port 80 and serves http_01.webroot; the token files go there.',
          ),
        address: ip.default('::').describe('Address the standalone listener binds (`::`: every IPv4 and IPv6 address).'),
        port: port.default(80).describe('Port of the standalone listener. Always 80 on the internet (the CA connects there); test rigs use another.'),
        webroot: absolutePath
          .default('/var/www/html')
          .describe('The web server’s document root in webroot mode: token files go to `<webroot>/.well-known/acme-challenge/` and are removed afterwards.'),
      })
      .prefault({}),
    dns_01: z
      .strictObject({
        provider: z.enum(['ionos']).default('ionos').describe('The DNS provider that holds the zones of hostname and extra_names: `ionos` (IONOS DNS API).'),
        api_key_file: absolutePath
          .default('/etc/mailproxy/ionos-api-key')
          .describe('File holding the provider’s API key (IONOS: `<public prefix>.<secret>`), readable by root only: the key never goes in mailproxy.yaml itself.'),
        api_url: z
          .string()
          .regex(/^https?:\/\/\S+$/, { message: 'expected an http(s) URL' })
          .default('https://api.hosting.ionos.com/dns')
          .describe('Base URL of the provider’s API. Always the default on the internet; tests point it at a stand-in on loopback.'),
        resolvers: z
          .array(dnsServer)
          .default([])
          .describe('DNS servers asked for the new TXT records before the CA is asked to check them. Empty: the zone’s authoritative nameservers (found through dns.servers).'),
        propagation_timeout: seconds(0, 3600)
          .default(300)
          .describe('Seconds to wait for the TXT records to show up at every server asked (then the issue fails and the records are removed). 0: do not wait.'),
      })
      .prefault({}),
    account_key: absolutePath
      .optional()
      .describe('The ACME account’s private key (PEM), made on first use with mode 0600 and reused afterwards. Unset: `<state_dir>/acme/account.key`.'),
    renew_days: z
      .number()
      .int()
      .min(1)
      .max(89)
      .default(30)
      .describe('`cert renew` renews only when the deployed certificate has fewer days left than this (or does not cover hostname and extra_names).'),
    jitter: seconds(0, 86400)
      .default(900)
      .describe(
        'Most seconds `cert renew` waits, at random, before it renews, so that many hosts do not ask the CA at the same moment (the timer adds its own RandomizedDelaySec).',
      ),
    trusted_cas: z
      .array(absolutePath)
      .default([])
      .describe(
        'PEM files of extra CA certificates trusted for the ACME server’s HTTPS and for the issued chain (Let’s Encrypt staging’s roots, a test CA like pebble). Empty in production.',
      ),
  })
  .prefault({});

// haraka-in's edge checks (mailproxy-edge): what Mailcow's postscreen did before the backend moved behind
// XCLIENT. Each check is `off`, `log` (one decision line; the client goes on) or `refuse`.
const edgeModes = ['off', 'log', 'refuse'] as const;

const dnsZone = z.string().refine((text) => /^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})+$/i.test(text) && text.length <= 200, {
  message: 'expected a DNS zone like zen.spamhaus.org',
});

const dnsListAnswer = z.string().refine((text) => parseAnswerRange(text) !== null, {
  message: 'expected an IPv4 address, CIDR or range like 127.0.0.2, 127.0.0.0/24 or 127.0.0.2-127.0.0.11',
});

const dnsListEntry = z.strictObject({
  zone: dnsZone,
  weight: z.number().int().min(1).max(100).default(1),
  answers: z.array(dnsListAnswer).default([]),
});

const edge = z
  .strictObject({
    allow: z
      .array(cidr)
      .default([])
      .describe(
        'Clients no edge check applies to (CIDRs): partners, your other servers. The appliance’s own addresses (health probes) and private clients (loopback, RFC 1918, as Haraka classes them) are never checked.',
      ),
    lookup_timeout: seconds(0.05, 0.95)
      .default(0.8)
      .describe(
        'Seconds one DNS list query may take. Queries go to dns.servers when the client connects, in parallel with the greeting, are awaited at its HELO and cached; no answer in time counts as not listed.',
      ),
    early_talker: z
      .strictObject({
        mode: z
          .enum(edgeModes)
          .default('refuse')
          .describe(
            'A client that sends before the banner (RFC 5321 §4.3.1: the client waits for it; many spam bots do not): `refuse` (554 5.5.1 and disconnect at its first command), `log` or `off`. Costs nothing, and no compliant client ever trips it.',
          ),
        pause: seconds(0, 30)
          .default(0)
          .describe(
            'Seconds the banner waits (for clients not on the allow list), so that more early talkers show themselves (postscreen’s greet wait is 6 s); one that talked meanwhile gets the refusal instead of the banner. 0: no wait, only bytes that arrive before the immediate banner count. Turning it on from 0 takes a restart of haraka-in (install.sh does that).',
          ),
      })
      .prefault({}),
    helo: z
      .strictObject({
        mode: z
          .enum(edgeModes)
          .default('log')
          .describe(
            'HELO/EHLO sanity, no DNS: a name that claims to be this server (hostname, one of domains, a public address) is `forged`; an address without brackets `bare_ip`; bad characters or labels `invalid`; a name without a dot `not_fqdn`. `log` (one decision line, the session goes on), `refuse` (5xx and disconnect) or `off`.',
          ),
      })
      .prefault({}),
    dnsbl: z
      .strictObject({
        mode: z
          .enum(edgeModes)
          .default('off')
          .describe(
            'DNSBL/DNSWL scoring: `off` (no list is ever asked), `log`, or `refuse` (554 5.7.1 and disconnect at HELO) once the score reaches threshold. Needs at least one entry in zones.',
          ),
        zones: z
          .array(dnsListEntry)
          .default([])
          .describe(
            'Block lists, each `{ zone, weight (1), answers ([]) }`: a list that lists the client adds its weight to the score. answers: the A records that count (addresses, CIDRs, ranges like 127.0.0.2-127.0.0.11); empty: any 127.0.0.0/8 answer except the lists’ "query refused" codes (127.255.255.x, 127.0.0.255), which are logged instead. A zone may appear more than once with other answers and weights. Public lists refuse queries that come through big public resolvers: point dns.servers at a resolver of your own.',
          ),
        dnswl_zones: z.array(dnsListEntry).default([]).describe('Allow lists, in the same form: a list that lists the client subtracts its weight from the score.'),
        threshold: z.number().int().min(1).max(1000).default(1).describe('Score at which a client is refused (or logged).'),
      })
      .superRefine((value, ctx) => {
        if (value.mode === 'off') return;
        const total = value.zones.reduce((sum, entry) => sum + entry.weight, 0);
        if (value.zones.length === 0) {
          ctx.addIssue({ code: 'custom', path: ['zones'], input: value.zones, message: `expected at least one zone: dnsbl.mode ${value.mode} asks none` });
        } else if (total < value.threshold) {
          ctx.addIssue({
            code: 'custom',
            path: ['threshold'],
            input: value.threshold,
            message: `expected at most ${total}, the weights of all zones together: no client could ever reach ${value.threshold}`,
          });
        }
      })
      .prefault({}),
  })
  .prefault({});

export const configSchema = z.strictObject({
  version: z.literal(1).describe('Format version of this file. Always 1.'),
  hostname: fqdn.describe("The VPS's public name: SMTP banner and HELO. Must equal the PTR of the public IPs."),
  public_ipv4: ipv4.describe("The VPS's public IPv4 address."),
  public_ipv6: ipv6.optional().describe("The VPS's public IPv6 address, if it has one."),
  domains: z.array(fqdn).min(1).describe('Domains haraka-in accepts mail for; everything else is refused with 5xx.'),
  inbound,
  edge,
  backend,
  limits,
  wireguard,
  outbound,
  tls,
  dns,
  system,
  health,
  acme,
  state_dir: absolutePath.default('/var/lib/mailproxy').describe('Where the queue and runtime state live.'),
  log_level: z.enum(LOG_LEVELS).default('info').describe('Haraka log level for both instances.'),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
