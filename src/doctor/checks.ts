// The decisions of `mailproxy doctor` (pure: no I/O): the DNS the appliance depends on, judged from the
// facts probes.ts gathered, each failure with the record to publish (or whom to ask), spelled out.
import type { Config } from '../config/schema';
import { mxMatches, parsePolicy, parseStsTxt } from '../mtasts/policy';
import { policyId, stsTxtRecord, tlsRptRecord, tlsRptUri } from '../mtasts-host/policy';
import { worst } from '../report/status';
import { describeLookup, type Lookup, type MxRecord } from '../selftest/dns';
import type { Finding } from '../report/findings';
import { sameIp } from '../selftest/checks';

/** MXToolbox's names: its check where it has one, else the lookup that shows the same thing. */
export const MXTOOLBOX = {
  mx: 'MX Lookup',
  address: 'A Lookup',
  ptr: 'Reverse Lookup',
  spf: 'SPF Record Published, SPF Syntax Check',
  spfLookups: 'SPF Included Lookups, SPF Void Lookups',
  spfIp: 'SPF Authentication',
  dmarc: 'DMARC Record Published, DMARC Policy Not Enabled',
  mtaSts: 'MTA-STS Lookup',
  tlsRpt: null,
  blacklist: 'Blacklist Check',
} as const;

const lower = (name: string) => name.toLowerCase().replace(/\.$/, '');
const publicIps = (config: Config) => [config.public_ipv4, ...(config.public_ipv6 ? [config.public_ipv6] : [])];

// ---------------------------------------------------------------------------------------------------------
// MX, A/AAAA, PTR

/** The MX of each domain is hostname, and only hostname (a second MX would take mail past haraka-in). */
export function judgeMx(domain: string, mx: Lookup<MxRecord>, hostname: string): Finding {
  const fix = `publish ${domain}. MX 10 ${hostname}. (and remove every other MX of ${domain})`;
  if (mx.kind === 'error') return { status: 'UNKNOWN', detail: `MX of ${domain}: ${describeLookup(mx)}` };
  if (mx.kind === 'none') return { status: 'CRITICAL', detail: `${domain} has no MX record (${describeLookup(mx)}): senders try its A record instead`, fix };
  const exchanges = [...mx.values].sort((a, b) => a.priority - b.priority);
  const shown = exchanges.map((record) => `${record.priority} ${record.exchange}`).join(', ');
  const ours = exchanges.filter((record) => lower(record.exchange) === lower(hostname));
  if (ours.length === 0) return { status: 'CRITICAL', detail: `MX of ${domain} is ${shown}, not hostname ${hostname}: mail for ${domain} does not reach haraka-in`, fix };
  if (ours.length < exchanges.length) {
    return { status: 'WARNING', detail: `MX of ${domain} is ${shown}: mail sent to the other MX hosts bypasses haraka-in`, fix };
  }
  return { status: 'OK', detail: `MX of ${domain} is ${shown}` };
}

function compareAddresses(kind: 'A' | 'AAAA', hostname: string, found: Lookup<string>, wanted: string | undefined): Finding {
  if (found.kind === 'error') return { status: 'UNKNOWN', detail: `${kind} of ${hostname}: ${describeLookup(found)}` };
  const values = found.kind === 'records' ? found.values : [];
  if (!wanted) {
    if (values.length === 0) return { status: 'OK', detail: `no ${kind}` };
    return {
      status: 'WARNING',
      detail: `${kind} ${values.join(', ')}, but the config has no public_ipv6: senders over IPv6 try an address haraka-in does not listen on`,
      fix: `remove ${hostname}. AAAA ${values.join(', ')}, or set public_ipv6 in mailproxy.yaml to the VPS's IPv6 address`,
    };
  }
  const fix = `publish ${hostname}. ${kind} ${wanted}${values.some((value) => !sameIp(value, wanted)) ? ` and remove ${kind} ${values.filter((value) => !sameIp(value, wanted)).join(', ')}` : ''}`;
  if (!values.some((value) => sameIp(value, wanted))) {
    return { status: 'CRITICAL', detail: `${kind} ${describeLookup(found)}, not the config's ${wanted}`, fix };
  }
  if (values.length > 1) return { status: 'WARNING', detail: `${kind} ${values.join(', ')}: senders also try the other address${values.length > 2 ? 'es' : ''}`, fix };
  return { status: 'OK', detail: `${kind} ${wanted}` };
}

/** hostname's A (and AAAA) records are exactly the public IPs of the config. */
export function judgeAddresses(config: Config, a: Lookup<string>, aaaa: Lookup<string>): Finding {
  const parts = [compareAddresses('A', config.hostname, a, config.public_ipv4), compareAddresses('AAAA', config.hostname, aaaa, config.public_ipv6)];
  const status = worst(parts.map((part) => part.status));
  const fixes = parts.map((part) => part.fix).filter(Boolean);
  return { status, detail: `${config.hostname}: ${parts.map((part) => part.detail).join('; ')}`, ...(fixes.length ? { fix: fixes.join('; ') } : {}) };
}

/** The PTR of each public IP is hostname (receivers compare it with the HELO name, and confirm it forward). */
export function judgePtr(ip: string, ptr: Lookup<string>, hostname: string): Finding {
  const fix = `ask your VPS provider to set the PTR (reverse DNS) of ${ip} to ${hostname} (most have it in their control panel)`;
  if (ptr.kind === 'error') return { status: 'UNKNOWN', detail: `PTR of ${ip}: ${describeLookup(ptr)}` };
  if (ptr.kind === 'none') return { status: 'CRITICAL', detail: `${ip} has no PTR record (${describeLookup(ptr)}): Gmail and others refuse mail from it`, fix };
  if (!ptr.values.some((name) => lower(name) === lower(hostname))) {
    return { status: 'CRITICAL', detail: `PTR of ${ip} is ${ptr.values.join(', ')}, not hostname ${hostname}: haraka-out's HELO and the PTR disagree`, fix };
  }
  if (ptr.values.length > 1)
    return { status: 'WARNING', detail: `${ip} has ${ptr.values.length} PTR records (${ptr.values.join(', ')}): receivers may pick another`, fix: `${fix}, and remove the others` };
  return { status: 'OK', detail: `PTR of ${ip} is ${hostname}` };
}

// ---------------------------------------------------------------------------------------------------------
// SPF (evaluated by mailauth; see probes.ts)

export interface SpfEvaluation {
  /** pass, fail, softfail, neutral, none, permerror, temperror. */
  result: string;
  /** mailauth's comment (says why for permerror/temperror). */
  comment: string;
  /** The record evaluated, when one was found. */
  record: string | null;
  lookups: { count: number; void: number; limit: number } | null;
}

export interface SpfFacts {
  domain: string;
  /** The domain's TXT records that start with v=spf1. */
  records: Lookup<string>;
  /** Evaluated for an address no record lists: every term is visited, so every lookup counted. */
  full: SpfEvaluation;
  /** Evaluated for each public IP, as a receiver does for mail from the VPS. */
  byIp: { ip: string; evaluation: SpfEvaluation }[];
}

const LOOKUP_LIMIT = /too many dns requests/i;
const VOID_LIMIT = /too many void/i;

/** The record to publish: the current one with the missing ip4:/ip6: terms first, or a new one. */
export function suggestSpf(record: string | null, ips: string[]): string {
  const terms = ips.map((ip) => `${ip.includes(':') ? 'ip6' : 'ip4'}:${ip}`);
  if (!record) return `v=spf1 ${terms.join(' ')} -all`;
  const parts = record.trim().split(/\s+/);
  const missing = terms.filter((term) => !parts.slice(1).some((part) => part.toLowerCase().replace(/^\+/, '') === term.toLowerCase()));
  return [parts[0], ...missing, ...parts.slice(1)].join(' ');
}

function spfRecords(facts: SpfFacts): string[] {
  return facts.records.kind === 'records' ? facts.records.values : [];
}

/** MXToolbox "SPF Record Published" and "SPF Syntax Check": one record, valid, not +all. */
export function judgeSpfRecord(facts: SpfFacts, config: Config): Finding {
  const { domain } = facts;
  const publish = (record: string) => `publish ${domain}. TXT "${record}"`;
  if (facts.records.kind === 'error') return { status: 'UNKNOWN', detail: `TXT of ${domain}: ${describeLookup(facts.records)}` };
  const records = spfRecords(facts);
  if (records.length === 0) {
    return { status: 'CRITICAL', detail: `${domain} has no SPF record: receivers cannot tell mail from the VPS from forgeries`, fix: publish(suggestSpf(null, publicIps(config))) };
  }
  if (records.length > 1) {
    return {
      status: 'CRITICAL',
      detail: `${domain} has ${records.length} SPF records (${records.map((record) => `"${record}"`).join(', ')}): receivers answer permerror`,
      fix: `keep one: ${publish(suggestSpf(records[0]!, publicIps(config)))} and remove the others`,
    };
  }
  const record = records[0]!;
  const { full } = facts;
  if (full.result === 'temperror') return { status: 'UNKNOWN', detail: `${domain}: SPF could not be evaluated (${full.comment})` };
  if (full.result === 'permerror' && !LOOKUP_LIMIT.test(full.comment) && !VOID_LIMIT.test(full.comment)) {
    return {
      status: 'CRITICAL',
      detail: `${domain}: "${record}" is not valid SPF (${full.comment.replace(/^.*?: permanent error in processing during lookup of [^:]*: /, '')})`,
      fix: publish(suggestSpf(null, publicIps(config))),
    };
  }
  if (/(^|\s)\+?all(\s|$)/i.test(record)) {
    return {
      status: 'CRITICAL',
      detail: `${domain}: "${record}" ends in +all: every host on the internet may send as ${domain}`,
      fix: publish(suggestSpf(record.replace(/(^|\s)\+?all(?=\s|$)/i, '$1-all'), publicIps(config))),
    };
  }
  return { status: 'OK', detail: `${domain}: "${record}"` };
}

/** MXToolbox "SPF Included Lookups" (at most 10 DNS-querying terms) and "SPF Void Lookups" (at most 2). */
export function judgeSpfLookups(facts: SpfFacts, config: Config): Finding {
  const { domain, full } = facts;
  if (facts.records.kind === 'error' || full.result === 'temperror')
    return { status: 'UNKNOWN', detail: `${domain}: SPF could not be evaluated (${full.comment || describeLookup(facts.records)})` };
  if (spfRecords(facts).length === 0) return { status: 'UNKNOWN', detail: `${domain} has no SPF record to count (see spf@${domain})` };
  const counted = full.lookups ? `${full.lookups.count} DNS lookup${full.lookups.count === 1 ? '' : 's'}, ${full.lookups.void} void` : '';
  const metrics: Record<string, number> = full.lookups ? { spf_lookups: full.lookups.count, spf_void_lookups: full.lookups.void } : {};
  if (LOOKUP_LIMIT.test(full.comment)) {
    return {
      status: 'CRITICAL',
      detail: `${domain}: evaluating "${full.record ?? spfRecords(facts)[0]}" takes more than 10 DNS lookups (include, a, mx, ptr, exists, redirect, counted through every include): receivers answer permerror`,
      fix: `replace include:, a and mx terms by the ip4:/ip6: ranges they stand for until at most 10 lookups remain; the appliance itself needs only ${publicIps(config)
        .map((ip) => `${ip.includes(':') ? 'ip6' : 'ip4'}:${ip}`)
        .join(' ')}`,
      metrics,
    };
  }
  if (VOID_LIMIT.test(full.comment)) {
    return {
      status: 'CRITICAL',
      detail: `${domain}: more than 2 of the SPF record's lookups find nothing (void lookups; ${counted}): receivers answer permerror`,
      fix: 'remove the terms that name hosts or domains without records (a:, mx:, include: of names that do not exist)',
      metrics,
    };
  }
  return { status: 'OK', detail: `${domain}: ${counted} (limits 10 and 2)`, metrics };
}

/** MXToolbox "SPF Authentication": the record authorizes each public IP (outbound mail leaves from the VPS). */
export function judgeSpfIp(facts: SpfFacts, config: Config): Finding {
  const { domain } = facts;
  const records = spfRecords(facts);
  const record = records.length === 1 ? records[0]! : null;
  if (facts.records.kind === 'error') return { status: 'UNKNOWN', detail: `TXT of ${domain}: ${describeLookup(facts.records)}` };
  const results = facts.byIp.map(({ ip, evaluation }) => ({ ip, evaluation, pass: evaluation.result === 'pass' }));
  const failing = results.filter((result) => !result.pass);
  // Only the addresses the record does not authorize yet are added to it.
  const fix = `publish ${domain}. TXT "${suggestSpf(record, record ? failing.map(({ ip }) => ip) : publicIps(config))}"`;
  const text = results.map(({ ip, evaluation }) => `${ip} ${evaluation.result}`).join(', ');
  if (failing.length === 0) return { status: 'OK', detail: `${domain} authorizes ${text}` };
  if (failing.every(({ evaluation }) => evaluation.result === 'temperror')) return { status: 'UNKNOWN', detail: `${domain}: ${text} (${failing[0]!.evaluation.comment})` };
  if (records.length === 0) return { status: 'CRITICAL', detail: `${domain} has no SPF record, so it authorizes nothing: ${text}`, fix };
  const permerror = failing.find(({ evaluation }) => evaluation.result === 'permerror');
  if (permerror) {
    return {
      status: 'CRITICAL',
      detail: `${domain}: ${text}: the record is in error (${permerror.evaluation.comment.replace(/^.*?: permanent error in processing during lookup of [^:]*: /, '')})`,
      fix: `${fix} (see spf@${domain} and spf.lookups@${domain})`,
    };
  }
  return {
    status: 'CRITICAL',
    detail: `${domain}: "${record ?? records[0]}" does not authorize ${failing.map(({ ip }) => ip).join(', ')} (${text}): haraka-out delivers from there, so receivers see SPF ${failing[0]!.evaluation.result}`,
    fix,
  };
}

// ---------------------------------------------------------------------------------------------------------
// DMARC (evaluated by mailauth)

export interface DmarcFacts {
  domain: string;
  /** TXT records at _dmarc.<domain> that start with v=DMARC1. */
  records: Lookup<string>;
  /** mailauth's verdict for mail from <domain> that passed SPF: none (no usable record), pass, temperror. */
  result: string;
  /** The effective policy, the record and where it was published, when one applies. */
  policy: string | null;
  record: string | null;
  policyDomain: string | null;
  error: string | null;
}

/** MXToolbox "DMARC Record Published" and "DMARC Policy Not Enabled": a record that parses, p=quarantine or reject. */
export function judgeDmarc(facts: DmarcFacts): Finding {
  const { domain } = facts;
  const fix = `publish _dmarc.${domain}. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@${domain}" (p=none first if other services send as ${domain} and are not yet in SPF or DKIM)`;
  if (facts.records.kind === 'error' || facts.result === 'temperror') return { status: 'UNKNOWN', detail: `_dmarc.${domain}: ${facts.error ?? describeLookup(facts.records)}` };
  const records = facts.records.kind === 'records' ? facts.records.values : [];
  if (records.length > 1) {
    return {
      status: 'CRITICAL',
      detail: `_dmarc.${domain} has ${records.length} DMARC records: receivers ignore them all`,
      fix: `keep one TXT record at _dmarc.${domain}: ${fix.replace(/^publish /, '')}`,
    };
  }
  if (!facts.policy || facts.result === 'none') {
    if (records.length) {
      return { status: 'CRITICAL', detail: `_dmarc.${domain}: "${records[0]}" does not parse as DMARC (no valid p= tag): receivers ignore it`, fix };
    }
    return {
      status: 'CRITICAL',
      detail: `${domain} has no DMARC record (_dmarc.${domain} TXT): Gmail, Yahoo and Microsoft require one of bulk senders, MXToolbox reports it`,
      fix,
    };
  }
  const where = facts.policyDomain && lower(facts.policyDomain) !== lower(domain) ? ` (inherited from _dmarc.${facts.policyDomain})` : '';
  const detail = `_dmarc.${domain}: "${facts.record}"${where}, policy ${facts.policy}`;
  if (facts.policy === 'none') {
    return {
      status: 'WARNING',
      detail: `${detail}: receivers only report, they do not act (DMARC Policy Not Enabled)`,
      fix: `once the reports (rua) show all your mail passing, change p=none to p=quarantine (then p=reject) in _dmarc.${facts.policyDomain ?? domain}`,
    };
  }
  return { status: 'OK', detail };
}

// ---------------------------------------------------------------------------------------------------------
// MTA-STS and TLS-RPT

export interface MtaStsFacts {
  domain: string;
  /** TXT at _mta-sts.<domain>. */
  txt: Lookup<string>;
  /** The policy body fetched from https://mta-sts.<domain>/.well-known/mta-sts.txt, or why not; null when not fetched. */
  policy: { text: string } | { error: string } | null;
  /** The domain's MX records (as judged by judgeMx). */
  mx: Lookup<MxRecord>;
}

const isSts = (record: string) => /^v=STSv1(\s*;|\s*$)/.test(record);

/** The policy this appliance serves (inbound.mta_sts on): its body and the id derived from it. */
export interface HostedPolicyFacts {
  text: string;
  id: string;
}

/**
 * Reported when present: the TXT record and the policy parse, and the policy's mx: lines match the MX. With
 * `hosted` (the appliance serves the policy), also that the record is published, that the service serves
 * the config's policy, and that the TXT's id is the id of the policy served.
 */
export function judgeMtaSts(facts: MtaStsFacts, hostname: string, hosted: HostedPolicyFacts | null = null): Finding {
  const { domain } = facts;
  if (facts.txt.kind === 'error') return { status: 'UNKNOWN', detail: `_mta-sts.${domain}: ${describeLookup(facts.txt)}` };
  const records = facts.txt.kind === 'records' ? facts.txt.values.filter(isSts) : [];
  if (records.length === 0 && hosted) {
    return {
      status: 'WARNING',
      detail: `inbound.mta_sts is on, but _mta-sts.${domain} is not published: senders never fetch the policy`,
      fix: `publish _mta-sts.${domain}. TXT "${stsTxtRecord(hosted.id)}" (mailproxy notes prints every record)`,
    };
  }
  if (records.length === 0) return { status: 'OK', detail: `${domain} publishes no MTA-STS policy (optional, RFC 8461)` };
  const policyUrl = `https://mta-sts.${domain}/.well-known/mta-sts.txt`;
  const txtFix = `publish one _mta-sts.${domain}. TXT "${hosted ? stsTxtRecord(hosted.id) : 'v=STSv1; id=<a new id, e.g. the date: 20260101T000000>'}"`;
  const parsedTxt = parseStsTxt(records.map((record) => [record]));
  if (!parsedTxt)
    return {
      status: 'WARNING',
      detail: `_mta-sts.${domain}: ${records.map((record) => `"${record}"`).join(', ')} is not one valid v=STSv1 record with an id: senders ignore the policy`,
      fix: txtFix,
    };
  if (!facts.policy || 'error' in facts.policy) {
    return {
      status: 'CRITICAL',
      detail: `_mta-sts.${domain} announces a policy (id ${parsedTxt.id}), but ${facts.policy ? facts.policy.error : 'it was not fetched'}`,
      fix: hosted
        ? `mta-sts.${domain} must resolve to the VPS (A/AAAA), mailproxy-mta-sts.service must run (systemctl status mailproxy-mta-sts) and the certificate must cover mta-sts.${domain}; or remove _mta-sts.${domain}`
        : `serve the policy at ${policyUrl} (HTTPS, a certificate valid for mta-sts.${domain}, text/plain, no redirect), or remove _mta-sts.${domain}`,
    };
  }
  const parsed = parsePolicy(facts.policy.text);
  if (!parsed.ok)
    return {
      status: 'CRITICAL',
      detail: `${policyUrl} does not parse: ${parsed.error}`,
      fix: `serve a valid policy at ${policyUrl}: "version: STSv1", "mode: enforce", "mx: ${hostname}", "max_age: 604800", one per line`,
    };
  const { policy } = parsed;
  const hosts = [...new Set([...(facts.mx.kind === 'records' ? facts.mx.values.map((record) => record.exchange) : []), lower(hostname)])];
  const uncovered = hosts.filter((host) => !policy.mx.some((pattern) => mxMatches(pattern, host)));
  const summary = `mode ${policy.mode}, mx: ${policy.mx.join(', ') || '(none)'}, max_age ${policy.maxAge} (id ${parsedTxt.id})`;
  if (uncovered.length && policy.mode !== 'none') {
    const fix = `put "mx: ${hostname}" in ${policyUrl} (one mx: line per MX host), then change the id in _mta-sts.${domain} TXT so that senders fetch it again`;
    const text = `${domain}: ${summary}: no mx: line matches ${uncovered.join(', ')}`;
    return policy.mode === 'enforce'
      ? { status: 'CRITICAL', detail: `${text}: senders that enforce MTA-STS refuse to deliver there`, fix }
      : { status: 'WARNING', detail: `${text}: senders report failures (testing) and will refuse once it enforces`, fix };
  }
  if (hosted) {
    const servedId = policyId(facts.policy.text);
    if (facts.policy.text !== hosted.text) {
      return {
        status: 'WARNING',
        detail: `${policyUrl} serves policy id ${servedId}, not the config's ${hosted.id} (${summary}): the service runs an older config`,
        fix: 'systemctl reload mailproxy-mta-sts (the installer does it after every config change), then publish the id `mailproxy notes` prints',
      };
    }
    if (parsedTxt.id !== servedId) {
      return {
        status: 'WARNING',
        detail: `_mta-sts.${domain} announces id ${parsedTxt.id}, but the policy served is id ${servedId} (${summary}): senders that cached an earlier policy keep it until its max_age ends`,
        fix: `publish _mta-sts.${domain}. TXT "${stsTxtRecord(servedId)}" in place of the old record`,
      };
    }
  }
  return { status: 'OK', detail: `${domain}: ${summary}` };
}

const TLSRPT_URI = /^(mailto:[^\s,!]+@[^\s,!]+|https:\/\/[^\s,!]+)(![0-9]+[kmgt]?)?$/i;

/**
 * Reported when present: one v=TLSRPTv1 record with rua= mailto:/https: addresses (RFC 8460). `wanted`
 * (inbound.mta_sts.tls_rpt_rua): the record must exist and send reports there too.
 */
export function judgeTlsRpt(domain: string, txt: Lookup<string>, wanted: string | null = null): Finding {
  if (txt.kind === 'error') return { status: 'UNKNOWN', detail: `_smtp._tls.${domain}: ${describeLookup(txt)}` };
  const records = txt.kind === 'records' ? txt.values.filter((record) => /^v=TLSRPTv1(\s*;|\s*$)/.test(record)) : [];
  const fix = `publish one _smtp._tls.${domain}. TXT "${wanted ? tlsRptRecord(wanted) : `v=TLSRPTv1; rua=mailto:postmaster@${domain}`}"`;
  if (records.length === 0 && wanted)
    return { status: 'WARNING', detail: `inbound.mta_sts.tls_rpt_rua is ${wanted}, but ${domain} publishes no TLS-RPT record: no report arrives`, fix };
  if (records.length === 0) return { status: 'OK', detail: `${domain} publishes no TLS-RPT record (optional, RFC 8460: senders' reports of TLS failures)` };
  if (records.length > 1) return { status: 'WARNING', detail: `_smtp._tls.${domain} has ${records.length} TLS-RPT records: senders ignore them all`, fix };
  const record = records[0]!;
  const rua = /(?:^|;)\s*rua\s*=\s*([^;]*)/i.exec(record)?.[1]?.trim();
  const uris = rua ? rua.split(',').map((uri) => uri.trim()) : [];
  if (!uris.length || !uris.every((uri) => TLSRPT_URI.test(uri))) {
    return { status: 'WARNING', detail: `_smtp._tls.${domain}: "${record}" has no valid rua= (mailto: or https: addresses): no report arrives`, fix };
  }
  if (wanted && !uris.some((uri) => uri.toLowerCase() === tlsRptUri(wanted).toLowerCase())) {
    return { status: 'WARNING', detail: `_smtp._tls.${domain}: reports go to ${uris.join(', ')}, not to inbound.mta_sts.tls_rpt_rua ${tlsRptUri(wanted)}`, fix };
  }
  return { status: 'OK', detail: `_smtp._tls.${domain}: reports go to ${uris.join(', ')}` };
}

// ---------------------------------------------------------------------------------------------------------
// Blacklist Check

export interface DnsblZone {
  zone: string;
  /** The list's name, for people. */
  name: string;
  /** Where to look up a listing and ask for removal. */
  delist: string;
}

/** The usual lists (the issue's: Spamhaus ZEN, Barracuda, SpamCop, UCEPROTECT level 1); --dnsbl replaces them. */
export const DEFAULT_DNSBL_ZONES: DnsblZone[] = [
  { zone: 'zen.spamhaus.org', name: 'Spamhaus ZEN', delist: 'https://check.spamhaus.org/' },
  { zone: 'b.barracudacentral.org', name: 'Barracuda', delist: 'https://www.barracudacentral.org/rbl/removal-request' },
  { zone: 'bl.spamcop.net', name: 'SpamCop', delist: 'https://www.spamcop.net/bl.shtml' },
  { zone: 'dnsbl-1.uceprotect.net', name: 'UCEPROTECT level 1', delist: 'https://www.uceprotect.net/en/rblcheck.php' },
];

/** `ZONE` or `ZONE=DELISTING-URL` (--dnsbl); a known zone keeps its name and page. Null when malformed. */
export function parseDnsblZone(text: string): DnsblZone | null {
  const [zone = '', ...rest] = text.split('=');
  const url = rest.join('=');
  const name = lower(zone.trim());
  if (!/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(name)) return null;
  if (url && !/^https?:\/\/\S+$/.test(url)) return null;
  const known = DEFAULT_DNSBL_ZONES.find((entry) => entry.zone === name);
  return { zone: name, name: known?.name ?? name, delist: url || known?.delist || `the web site of ${name}` };
}

/** The query name of an IPv4 address in a DNSBL zone: octets reversed (RFC 5782 §2.1). */
export function dnsblQueryName(ip: string, zone: string): string {
  return `${ip.split('.').reverse().join('.')}.${zone}`;
}

export interface DnsblFacts {
  ip: string;
  zone: DnsblZone;
  /** A records of the query name: none = not listed. */
  a: Lookup<string>;
  /** TXT of the query name (the list's reason), asked when listed. */
  txt: Lookup<string> | null;
}

/** MXToolbox "Blacklist Check": the public IPv4 is not listed; a listing is a finding with the delisting page. */
export function judgeDnsbl(facts: DnsblFacts): Finding {
  const { ip, zone, a } = facts;
  const where = `${zone.name} (${zone.zone})`;
  if (a.kind === 'error') return { status: 'UNKNOWN', detail: `${where}: ${describeLookup(a)}` };
  if (a.kind === 'none') return { status: 'OK', detail: `${ip} is not listed in ${where}` };
  // Answers in 127.255.255.0/24 are the list refusing the query (Spamhaus: 254 = a public resolver asked,
  // 255 = too many queries), never a listing; anything outside 127/8 is not a DNSBL answer at all.
  const codes = a.values;
  if (codes.some((code) => code.startsWith('127.255.255.'))) {
    return {
      status: 'UNKNOWN',
      detail: `${where} refused the query (${codes.join(', ')}): lists refuse public resolvers; ask through a resolver of your own (unbound on the VPS) with --resolver or dns.servers`,
    };
  }
  if (!codes.every((code) => code.startsWith('127.'))) {
    return { status: 'UNKNOWN', detail: `${where} answered ${codes.join(', ')}, which is not a DNSBL answer: does the resolver rewrite NXDOMAIN?` };
  }
  const reason = facts.txt?.kind === 'records' ? `: ${facts.txt.values.join(' ')}` : '';
  return {
    status: 'CRITICAL',
    detail: `${ip} is LISTED in ${where} (${codes.join(', ')})${reason}: receivers using it refuse mail from the VPS`,
    fix: `find why and ask for removal at ${zone.delist} (fix the cause first: an open relay, a compromised account, a previous tenant of the address)`,
  };
}
