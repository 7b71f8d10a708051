// A throwaway self-signed certificate for the demo and tests, made at run time with the openssl CLI
// (no key material is ever shipped).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface KeyPair {
  keyPath: string;
  certPath: string;
}

export interface SelfSignedOptions {
  /** An RSA 2048 key instead of the P-256 one. */
  rsa?: boolean;
  /** More X.509v3 extensions, each as openssl's -addext takes it. */
  extensions?: string[];
}

export function makeSelfSigned(dir: string, hostname: string, days = 30, options: SelfSignedOptions = {}): KeyPair {
  mkdirSync(dir, { recursive: true });
  const keyPath = path.join(dir, 'privkey.pem');
  const certPath = path.join(dir, 'fullchain.pem');
  const newKey = options.rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      ...newKey,
      '-nodes',
      '-days',
      String(days),
      '-subj',
      `/CN=${hostname}`,
      '-addext',
      `subjectAltName=DNS:${hostname}`,
      ...(options.extensions ?? []).flatMap((extension) => ['-addext', extension]),
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'pipe' },
  );
  return { keyPath, certPath };
}
