// Haraka's OutboundTLS singleton: the one module instance Haraka's own outbound code uses. tls-fallback.ts
// replaces its TLS-nogo memory and dane.ts its options for DANE-governed hosts; each marks what it patched
// with a symbol of its own.

export interface OutboundTls {
  check_tls_nogo(host: string, ok: () => void, nogo: (when: string) => void): void;
  mark_tls_nogo(host: string, done: () => void): void;
  cfg?: { force_tls_hosts?: string[] };
  [patched: symbol]: boolean | undefined;
}

export function harakaOutboundTls(): OutboundTls {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('haraka/outbound/tls');
}
