// DKIM as senders and receivers use it, with mailauth: a key made per test run, signatures with simple and
// relaxed canonicalization, and verification whose key lookup is answered here (never by DNS).
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign, dkimVerify } from 'mailauth';

export const DKIM_DOMAIN = 'example.net';
const SELECTOR = 'mailproxy-test';

export type Canonicalization = 'simple/simple' | 'relaxed/relaxed';

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
const privateKey = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicKey = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

async function resolver(name: string, type: string): Promise<string[][]> {
  if (type === 'TXT' && name === `${SELECTOR}._domainkey.${DKIM_DOMAIN}`) return [[`v=DKIM1; k=rsa; p=${publicKey}`]];
  throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
}

/** The message with its DKIM-Signature header on top, as the sending MTA hands it on. */
export async function signed(message: Buffer, canonicalization: Canonicalization): Promise<Buffer> {
  const signature = { signingDomain: DKIM_DOMAIN, selector: SELECTOR, privateKey, algorithm: 'rsa-sha256', canonicalization };
  // mailauth signs with each entry of signatureData (its typings also ask for the first one at the top level).
  const result = await dkimSign(message, { ...signature, signatureData: [signature] });
  if (result.errors.length > 0 || !result.signatures) throw new Error(`dkimSign: ${JSON.stringify(result.errors)}`);
  return Buffer.concat([Buffer.from(result.signatures), message]);
}

/** The verdict of the first signature at the receiver: 'pass', or what failed and why. */
export async function verdict(message: Buffer): Promise<string> {
  const result = await dkimVerify(message, { resolver });
  const first = result.results[0] as { status?: { result?: string; comment?: string } } | undefined;
  if (!first?.status) return 'no signature';
  return first.status.result === 'pass' ? 'pass' : `${first.status.result ?? '?'}: ${first.status.comment ?? ''}`;
}
