// A real Postfix as haraka-in's backend for the e2e tests (the Mailcow stand-in): it takes mail for
// demo.test and XCLIENT from the forwarder's WireGuard address; and haraka-in alone in front of it.
import { afterAll, beforeAll } from 'vitest';
import type { ConfigInput } from '../../src/config/schema';
import { LOOPBACK } from '../../src/demo/topology';
import { startPostfix, type PostfixInstance } from '../fixtures/postfix';
import type { TestTopologyOptions } from './topology';

export interface PostfixBackendOptions {
  /** Local parts that exist at the backend; default alice. */
  users?: string[];
  /** Extra main.cf settings (the fixture's extraMainCf). */
  extraMainCf?: Record<string, string>;
}

/** One Postfix backend shared by the tests of a describe block: started in beforeAll, stopped in afterAll. */
export function usePostfixBackend(options: PostfixBackendOptions = {}): () => PostfixInstance {
  let postfix: PostfixInstance | null = null;
  beforeAll(async () => {
    postfix = await startPostfix({
      listenHost: LOOPBACK.backend,
      port: 0,
      domains: ['demo.test'],
      users: options.users ?? ['alice'],
      xclientHosts: [LOOPBACK.wireguard],
      ...(options.extraMainCf ? { extraMainCf: options.extraMainCf } : {}),
    });
  });
  afterAll(async () => {
    await postfix?.stop();
  });
  return () => {
    if (!postfix) throw new Error('Postfix not started');
    return postfix;
  };
}

/**
 * haraka-in alone (no stand-in backend, no internet MX) forwarding to the backend on `port()`, asked when
 * the topology starts; `tweak` changes the config further.
 */
export function harakaInFront(port: () => number, tweak: (config: ConfigInput) => void = () => undefined): TestTopologyOptions {
  return {
    instances: ['haraka-in'],
    backend: false,
    internet: false,
    tweak: (config) => {
      config.backend = { ...config.backend, port: port() };
      tweak(config);
    },
  };
}
