// Certificates for the `cert deploy` tests, made at run time with the openssl CLI (`openssl ca`, which,
// unlike `x509 -req` in OpenSSL 3.0, sets any validity window: expired and not-yet-valid certificates
// too). A CA here can sign leaves and intermediates; nothing is ever shipped.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const HOUR = 3_600_000;
const DAY = 86_400_000;

export interface Issued {
  keyPath: string;
  certPath: string;
  keyPem: string;
  certPem: string;
  fingerprint: string;
}

export interface IssueOptions {
  names: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Put the issuing CA's own chain (intermediates, not the root) after the leaf in certPath: a fullchain. */
  fullchain?: boolean;
}

export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

export interface Ca {
  certPath: string;
  certPem: string;
  /** This CA's certificate and the intermediates above it, without the root (what a fullchain appends). */
  chainPem: string;
  issue(options: IssueOptions): Issued;
  /** An intermediate CA signed by this one, valid from an hour ago for 30 days unless told otherwise. */
  intermediate(name: string, validity?: Validity): Ca;
}

function stamp(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

let counter = 0;

export function makeCa(dir: string, name = 'mailproxy deploy test CA', parent?: { sign: (csr: string, ext: string, out: string) => void; chainPem: string }): Ca {
  mkdirSync(dir, { recursive: true });
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = local',
      '[local]',
      'dir = .',
      'database = index.txt',
      'new_certs_dir = .',
      'serial = serial',
      'default_md = sha256',
      'policy = any',
      'unique_subject = no',
      'copy_extensions = none',
      '[any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial'), `${(1000 + counter++ * 100).toString(16).padStart(4, '0')}\n`);
  const sign = (csr: string, ext: string, out: string, notBefore = new Date(Date.now() - HOUR), notAfter = new Date(Date.now() + 30 * DAY)) => {
    openssl([
      'ca',
      '-batch',
      '-config',
      'ca.cnf',
      '-cert',
      'ca.pem',
      '-keyfile',
      'ca-key.pem',
      '-startdate',
      stamp(notBefore),
      '-enddate',
      stamp(notAfter),
      '-in',
      csr,
      '-out',
      out,
      '-extfile',
      ext,
      '-notext',
    ]);
  };
  if (parent) {
    openssl(['req', '-new', ...EC, '-subj', `/CN=${name}`, '-keyout', 'ca-key.pem', '-out', 'ca.csr']);
    writeFileSync(path.join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
    parent.sign(path.join(dir, 'ca.csr'), path.join(dir, 'ca.ext'), path.join(dir, 'ca.pem'));
  } else {
    openssl([
      'req',
      '-x509',
      ...EC,
      '-days',
      '3650',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca.pem',
    ]);
  }
  const certPem = readFileSync(path.join(dir, 'ca.pem'), 'utf8');
  const chainPem = parent ? `${certPem}${parent.chainPem}` : '';
  let serial = 0;
  return {
    certPath: path.join(dir, 'ca.pem'),
    certPem,
    chainPem,
    issue(options) {
      serial += 1;
      const base = path.join(dir, `leaf-${serial}`);
      openssl(['req', '-new', ...EC, '-subj', `/CN=${options.names[0]}`, '-keyout', `${base}-key.pem`, '-out', `${base}.csr`]);
      writeFileSync(`${base}.ext`, `subjectAltName=${options.names.map((entry) => `DNS:${entry}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
      sign(`${base}.csr`, `${base}.ext`, `${base}.pem`, options.notBefore, options.notAfter);
      if (options.fullchain) writeFileSync(`${base}.pem`, `${readFileSync(`${base}.pem`, 'utf8')}${chainPem}`);
      const certPem = readFileSync(`${base}.pem`, 'utf8');
      return {
        keyPath: `${base}-key.pem`,
        certPath: `${base}.pem`,
        keyPem: readFileSync(`${base}-key.pem`, 'utf8'),
        certPem,
        fingerprint: new X509Certificate(certPem).fingerprint256,
      };
    },
    intermediate(childName, validity = {}) {
      return makeCa(path.join(dir, `ca-${childName.replace(/\W+/g, '-')}`), childName, {
        sign: (csr, ext, out) => sign(csr, ext, out, validity.notBefore, validity.notAfter),
        chainPem,
      });
    },
  };
}
