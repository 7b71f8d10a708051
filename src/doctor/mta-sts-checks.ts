// The MTA-STS and TLS-RPT decisions of `mailproxy doctor` (pure: no I/O): the policy a domain announces
// and serves, and where TLS failure reports go, judged from the facts probes.ts gathered.
import { mxMatches, parsePolicy, parseStsTxt } from '../mtasts/policy';
import { policyId, stsTxtRecord, tlsRptRecord, tlsRptUri } from '../mtasts-host/policy';
import type { Finding } from '../report/findings';
import { describeLookup, type Lookup, type MxRecord } from '../selftest/dns';
import { lower } from './checks';

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
