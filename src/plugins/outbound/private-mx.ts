// Pure: whether an MX address lies where haraka-out never delivers by MX. An outside domain whose MX
// resolves into the WireGuard network or private space would have haraka-out connect there from the
// address the backend trusts (a loop into the backend, or a relay into the home network); such an
// address is skipped, and a domain with nothing else stays queued with the reason.
import ipaddr from 'ipaddr.js';
import type { Cidr } from '../../config/net';

const NAMED_RANGES: Record<string, string> = {
  private: 'private (RFC 1918)',
  loopback: 'loopback',
  linkLocal: 'link-local',
  uniqueLocal: 'unique local (ULA)',
  carrierGradeNat: 'carrier-grade NAT',
  unspecified: 'unspecified',
};

/** Why `address` is no MX address for haraka-out (behind the tunnel, private, loopback, …), or null. */
export function privateMxReason(address: string, tunnel: Cidr | null): string | null {
  if (!ipaddr.isValid(address)) return null;
  const ip = ipaddr.process(address);
  if (tunnel && ip.kind() === tunnel[0].kind() && ip.match(tunnel)) return 'inside wireguard.network';
  return NAMED_RANGES[ip.range()] ?? null;
}

export interface MxAddress {
  exchange: string;
  from_dns?: string;
}

/** Splits resolved MX entries into those haraka-out may use and those it skips, each with its reason. */
export function splitPrivateMx<T extends MxAddress>(mxs: T[], tunnel: Cidr | null): { usable: T[]; skipped: { mx: T; reason: string }[] } {
  const usable: T[] = [];
  const skipped: { mx: T; reason: string }[] = [];
  for (const mx of mxs) {
    const reason = privateMxReason(mx.exchange, tunnel);
    if (reason) skipped.push({ mx, reason });
    else usable.push(mx);
  }
  return { usable, skipped };
}
