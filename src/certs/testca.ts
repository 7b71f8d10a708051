// A throwaway certificate authority for tests and test rigs (MTA-STS policy hosts, MX servers with
// "valid" TLS): made at run time with the openssl CLI, never shipped.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface IssuedCertificate {
  key: string;
  cert: string;
}

export interface TestCa {
  /** PEM of the CA certificate, for NODE_EXTRA_CA_CERTS or a `ca` option. */
  caPem: string;
  caPath: string;
  /** A server certificate for `names` (the first is the CN) signed by this CA. */
  issue(names: string[]): IssuedCertificate;
}

export function makeTestCa(dir: string): TestCa {
  mkdirSync(dir, { recursive: true });
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl(['req', '-x509', ...EC, '-days', '2', '-subj', '/CN=mailproxy test CA', '-keyout', 'ca-key.pem', '-out', 'ca.pem']);
  let serial = 1;
  return {
    caPath: path.join(dir, 'ca.pem'),
    caPem: readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    issue(names) {
      serial += 1;
      const base = `server-${serial}`;
      openssl(['req', '-new', ...EC, '-subj', `/CN=${names[0]}`, '-keyout', `${base}-key.pem`, '-out', `${base}.csr`]);
      writeFileSync(path.join(dir, `${base}.ext`), `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      openssl([
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca-key.pem',
        '-set_serial',
        String(serial),
        '-days',
        '2',
        '-extfile',
        `${base}.ext`,
        '-out',
        `${base}.pem`,
      ]);
      return { key: readFileSync(path.join(dir, `${base}-key.pem`), 'utf8'), cert: readFileSync(path.join(dir, `${base}.pem`), 'utf8') };
    },
  };
}
