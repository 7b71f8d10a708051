// A mailproxy.yaml for the command-line tests: the smallest valid config (mx.example.com, 203.0.113.25,
// example.com) with its state_dir in the test's own directory.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';

/** Writes `dir/mailproxy.yaml` (state_dir `dir/state`) with the top-level keys in `extra`; returns its path. */
export function writeSmallConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, 'mailproxy.yaml');
  writeFileSync(
    file,
    stringify({
      version: 1,
      hostname: 'mx.example.com',
      public_ipv4: '203.0.113.25',
      domains: ['example.com'],
      state_dir: path.join(dir, 'state'),
      ...extra,
    }),
  );
  return file;
}
