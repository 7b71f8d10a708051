// The effectful edge of `mailproxy doctor`: DNS through the chosen resolver only, SPF and DMARC evaluated by
// mailauth (handed that resolver as its resolver function), the MTA-STS policy fetched over HTTPS (its host
// name resolved through the same servers). Probes report facts; checks.ts decides.
import { dmarc } from 'mailauth/lib/dmarc';
import { spf } from 'mailauth/lib/spf';
import { fetchPolicyText } from '../mtasts/fetch';
import type { DnsClient, Lookup, MxRecord } from '../selftest/dns';
import type { DmarcFacts, SpfEvaluation, SpfFacts } from './checks';
import { dnsblQueryName, type DnsblFacts, type DnsblZone } from './dnsbl-checks';
import type { MtaStsFacts } from './mta-sts-checks';

// An address no SPF record lists (RFC 5735 "this network"): evaluated for it, a record is walked to its
// end, so every DNS lookup it can make is counted, as a receiver counts them for a stranger.
export const UNLISTED_IP = '0.0.0.1';
// Generous for a whole SPF walk through slow authoritative servers, short of a hang.
const SPF_TIME_LIMIT_MS = 20_000;
const MTA_STS_TIMEOUT_MS = 10_000;

function only<T>(lookup: Lookup<T>, keep: (value: T) => boolean): Lookup<T> {
  if (lookup.kind !== 'records') return lookup;
  const values = lookup.values.filter(keep);
  return values.length ? { kind: 'records', values } : { kind: 'none', code: 'ENODATA' };
}

async function evaluateSpf(dns: DnsClient, domain: string, ip: string, hostname: string): Promise<SpfEvaluation> {
  try {
    const result = await spf({
      sender: `postmaster@${domain}`,
      ip,
      helo: hostname,
      mta: hostname,
      resolver: (name: string, type: string) => dns.resolve(name, type) as Promise<string[]>,
      // RFC 7208 exactly: the whole record's syntax first, void lookups counted as the RFC counts them.
      strict: true,
      maxElapsedTime: SPF_TIME_LIMIT_MS,
    });
    return {
      result: result.status.result,
      comment: typeof result.status.comment === 'string' ? result.status.comment : '',
      record: result.rr ?? null,
      lookups: result.lookups ? { count: result.lookups.count, void: result.lookups.void, limit: result.lookups.limit } : null,
    };
  } catch (err) {
    return { result: 'temperror', comment: (err as Error).message, record: null, lookups: null };
  }
}

/** The domain's SPF records, evaluated in full (UNLISTED_IP) and for each public IP. */
export async function probeSpf(dns: DnsClient, domain: string, ips: string[], hostname: string): Promise<SpfFacts> {
  const [records, full, ...byIp] = await Promise.all([
    dns.txt(domain).then((txt) => only(txt, (record) => /^v=spf1(\s|$)/i.test(record))),
    evaluateSpf(dns, domain, UNLISTED_IP, hostname),
    ...ips.map((ip) => evaluateSpf(dns, domain, ip, hostname)),
  ]);
  return { domain, records, full, byIp: ips.map((ip, index) => ({ ip, evaluation: byIp[index]! })) };
}

/** The DMARC record of the domain, and mailauth's verdict for mail from it that passed SPF. */
export async function probeDmarc(dns: DnsClient, domain: string): Promise<DmarcFacts> {
  const records = only(await dns.txt(`_dmarc.${domain}`), (record) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(record));
  try {
    const result = await dmarc({
      headerFrom: `postmaster@${domain}`,
      spfDomains: [domain],
      dkimDomains: [],
      resolver: (name: string, type: string) => dns.resolve(name, type) as Promise<string[]>,
    });
    if (!result) return { domain, records, result: 'none', policy: null, record: null, policyDomain: null, error: null };
    return {
      domain,
      records,
      result: result.status.result,
      policy: result.status.result === 'none' ? null : (result.policy ?? null),
      record: result.rr ?? null,
      policyDomain: result.policyDomain ?? null,
      error: (result as { error?: string }).error ?? null,
    };
  } catch (err) {
    return { domain, records, result: 'temperror', policy: null, record: null, policyDomain: null, error: (err as Error).message };
  }
}

/** `_mta-sts.<domain>` TXT and, when it announces a policy, the policy itself (fetched, certificate verified). */
export async function probeMtaSts(dns: DnsClient, domain: string, mx: Lookup<MxRecord>, options: { port: number; ca: string[] }): Promise<MtaStsFacts> {
  const txt = await dns.txt(`_mta-sts.${domain}`);
  const announced = txt.kind === 'records' && txt.values.some((record) => /^v=STSv1(\s*;|\s*$)/.test(record));
  if (!announced) return { domain, txt, policy: null, mx };
  try {
    const text = await fetchPolicyText(domain, {
      servers: dns.servers,
      port: options.port,
      timeoutMs: MTA_STS_TIMEOUT_MS,
      ...(options.ca.length ? { ca: options.ca.join('\n') } : {}),
    });
    return { domain, txt, policy: { text }, mx };
  } catch (err) {
    return { domain, txt, policy: { error: (err as Error).message }, mx };
  }
}

/** The public IPv4 in one DNSBL zone: A (listed or not) and, when listed, the list's TXT reason. */
export async function probeDnsbl(dns: DnsClient, ip: string, zone: DnsblZone): Promise<DnsblFacts> {
  const name = dnsblQueryName(ip, zone.zone);
  const a = await dns.a(name);
  const txt = a.kind === 'records' ? await dns.txt(name) : null;
  return { ip, zone, a, txt };
}
