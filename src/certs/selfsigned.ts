// A throwaway self-signed certificate for the demo and tests, made at run time with the openssl CLI
// (no key material is ever shipped).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface KeyPair {
  keyPath: string;
  certPath: string;
}

export function makeSelfSigned(dir: string, hostname: string, days = 30): KeyPair {
  mkdirSync(dir, { recursive: true });
  const keyPath = path.join(dir, 'privkey.pem');
  const certPath = path.join(dir, 'fullchain.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      String(days),
      '-subj',
      `/CN=${hostname}`,
      '-addext',
      `subjectAltName=DNS:${hostname}`,
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'pipe' },
  );
  return { keyPath, certPath };
}
