// SPF of a stored message's sender, evaluated by mailauth for the original client's address: the input of
// bounceOrHold (drain-plan.ts). The DNS resolver is a parameter (node:dns `resolve(name, type)` in form),
// so the caller picks the servers and tests answer from a table; nothing here reaches the system resolver.
//
//   const { result } = await senderSpf({ mailFrom, ip: meta.client.address, helo: meta.client.helo, mta }, resolve);
import { spf } from 'mailauth/lib/spf';

/** Resolves `name` for `type` as node:dns `resolve` does (TXT as string[][]; ENOTFOUND/ENODATA errors). */
export type DnsResolve = (name: string, type: string) => Promise<unknown>;

export interface SenderSpfInput {
  mailFrom: string;
  /** The original client's address. */
  ip: string;
  helo: string | null;
  /** This host's name (mailauth puts it in its Received-SPF text). */
  mta: string;
}

export interface SenderSpf {
  /** RFC 7208 result: pass, fail, softfail, neutral, none, temperror, permerror. */
  result: string;
  comment: string;
}

// Generous for a whole SPF walk through slow authoritative servers, short of a hang.
const SPF_TIME_LIMIT_MS = 20_000;

export async function senderSpf(input: SenderSpfInput, resolve: DnsResolve): Promise<SenderSpf> {
  const sender = input.mailFrom.trim().replace(/^<(.*)>$/, '$1');
  if (!sender.includes('@')) return { result: 'none', comment: 'no sender domain' };
  try {
    const verdict = await spf({
      sender,
      ip: input.ip,
      helo: input.helo ?? undefined,
      mta: input.mta,
      resolver: resolve as (name: string, type: string) => Promise<string[]>,
      // RFC 7208 exactly: a record with errors is permerror, which holds the message rather than bouncing it.
      strict: true,
      maxElapsedTime: SPF_TIME_LIMIT_MS,
    });
    return { result: verdict.status.result, comment: typeof verdict.status.comment === 'string' ? verdict.status.comment : '' };
  } catch (err) {
    return { result: 'temperror', comment: (err as Error).message };
  }
}
