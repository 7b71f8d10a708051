// System test peers (Postfix, swaks, smtp-source): a suite that needs one runs when it is there, fails with
// a clear message in CI (CI=true) when it is not, and is skipped locally with a loud notice.
import { accessSync, constants } from 'node:fs';
import { it } from 'vitest';

export function missingPeers(paths: string[], extra: (string | null)[] = []): string | null {
  for (const file of paths) {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      return `${file} is missing (sudo bash scripts/install-test-peers.sh installs it)`;
    }
  }
  return extra.find((reason) => reason !== null) ?? null;
}

/** Returns true when the suite can run; otherwise registers a failing test in CI, or warns loudly. */
export function requirePeers(suite: string, reason: string | null): boolean {
  if (!reason) return true;
  if (process.env.CI === 'true') {
    it(`${suite}: test peers are present (required when CI=true)`, () => {
      throw new Error(`CI=true but ${suite} cannot run: ${reason}`);
    });
  } else {
    console.warn(`\n${'!'.repeat(78)}\n!!! SKIPPING ${suite}: ${reason}\n!!! (this fails with CI=true)\n${'!'.repeat(78)}\n`);
  }
  return false;
}
