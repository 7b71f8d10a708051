// The decisions of `mailproxy doctor` (pure: no I/O): the DNS the appliance depends on, judged from the
// facts probes.ts gathered, each failure with the record to publish (or whom to ask), spelled out. Here
// MX, A/AAAA, PTR, SPF and DMARC; MTA-STS and TLS-RPT in mta-sts-checks.ts, the DNSBLs in dnsbl-checks.ts.
import type { Config } from '../config/schema';
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

/** A DNS name as compared: lower case, no trailing dot. */
export const lower = (name: string) => name.toLowerCase().replace(/\.$/, '');
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
