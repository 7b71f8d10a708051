// The MTA-STS policy service (inbound.mta_sts), judged from what each of its listeners answered (pure): the
// policy of the config, as text/plain, with a certificate for the name that is valid now. Days left are
// haraka-in.tls's business: the service presents the same certificate.
import type { PolicyServiceFacts } from '../mtasts-host/probe';
import { policyId } from '../mtasts-host/policy';
import { worst, type Status, type Verdict } from '../report/status';

const UNIT_HINT = 'systemctl status mailproxy-mta-sts';

function judgeOne(facts: PolicyServiceFacts, expected: { text: string; id: string }, now: Date): Verdict {
  const where = `${facts.host} on ${facts.address}`;
  if (facts.error) return { status: 'CRITICAL', detail: `${where}: ${facts.error}: senders cannot fetch the policy (${UNIT_HINT})` };
  if (facts.status !== 200) return { status: 'CRITICAL', detail: `${where}: HTTP ${facts.status} instead of the policy (${UNIT_HINT})` };
  const type = (facts.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'text/plain') return { status: 'CRITICAL', detail: `${where}: Content-Type ${facts.contentType ?? 'missing'}, not text/plain: senders reject the policy` };
  const cert = facts.certificate;
  if (!cert) return { status: 'CRITICAL', detail: `${where}: no certificate presented` };
  if (now < cert.validFrom || now > cert.validTo) {
    return {
      status: 'CRITICAL',
      detail: `${where}: the certificate presented is not valid now (${cert.validFrom.toISOString()} to ${cert.validTo.toISOString()}): senders cannot fetch the policy`,
    };
  }
  if (!cert.coversHost) return { status: 'WARNING', detail: `${where}: the certificate does not cover ${facts.host}: senders cannot fetch the policy (native ACME adds the name)` };
  if (facts.body !== expected.text) {
    return { status: 'WARNING', detail: `${where}: serves policy id ${policyId(facts.body ?? '')}, not the config's ${expected.id}: systemctl reload mailproxy-mta-sts` };
  }
  return { status: 'OK', detail: `${where}: policy id ${expected.id}` };
}

/** Every listener asked for every policy host: the worst answer decides, each one not OK is named. */
export function judgeMtaStsService(answers: PolicyServiceFacts[], expected: { text: string; id: string }, now: Date): Verdict {
  if (answers.length === 0) return { status: 'UNKNOWN', detail: 'the MTA-STS service has no listen address to probe' };
  const verdicts = answers.map((facts) => judgeOne(facts, expected, now));
  const status: Status = worst(verdicts.map((verdict) => verdict.status));
  if (status === 'OK')
    return {
      status,
      detail: `policy id ${expected.id} served for ${[...new Set(answers.map((facts) => facts.host))].join(', ')} on ${[...new Set(answers.map((facts) => facts.address))].join(', ')}`,
    };
  return {
    status,
    detail: verdicts
      .filter((verdict) => verdict.status !== 'OK')
      .map((verdict) => verdict.detail)
      .join('; '),
  };
}
