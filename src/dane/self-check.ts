// Whether the resolver DANE asks validates DNSSEC at all: `mailproxy dane resolver`, the installer and
// `mailproxy health` ask it the same way.
import type { DnssecResolver } from './resolver';

/** The root zone is signed: a validating resolver answers its SOA with the AD bit. */
export async function resolverValidates(resolver: DnssecResolver): Promise<{ ok: boolean; text: string }> {
  try {
    const answer = await resolver.query('.', 'SOA');
    if (answer.kind === 'failed') return { ok: false, text: `the resolver failed to answer the root SOA (${answer.why})` };
    if (answer.security !== 'secure') return { ok: false, text: 'the resolver answers without the AD bit: it does not validate DNSSEC, so DANE cannot work' };
    return { ok: true, text: 'the resolver validates DNSSEC (the root SOA came with the AD bit)' };
  } catch (error) {
    return { ok: false, text: (error as Error).message };
  }
}
