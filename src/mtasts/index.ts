// MTA-STS (RFC 8461) for haraka-out: which MX hosts a domain allows and whether TLS is mandatory.
export { MAX_POLICY_MAX_AGE, mxMatches, normalizeDomain, parsePolicy, parseStsTxt, type ParsePolicyResult, type StsMode, type StsPolicy } from './policy';
export { fetchPolicyText, MAX_POLICY_BYTES, POLICY_PATH, type FetchPolicyOptions } from './fetch';
export { fileStore, isCachedPolicy, type CachedPolicy, type PolicyStore } from './store';
export { createMtaStsResolver, MtaStsResolver, type MtaStsDeps, type MtaStsResolverOptions, type PolicyDecision } from './cache';
