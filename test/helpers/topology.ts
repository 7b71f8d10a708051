// Test fixture: the whole loopback topology on free ports in its own temp dir, torn down after the test
// even when it fails.
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import { startTopology, type Topology, type TopologyOptions } from '../../src/demo/topology';
import { freePort } from './ports';

export async function loopbackPorts() {
  return {
    inbound: await freePort('127.0.0.1'),
    outbound: await freePort('127.0.0.3'),
    backend: await freePort('127.0.0.2'),
    internetMx: await freePort('127.0.0.4'),
    dns: await freePort('127.0.0.1'),
  };
}

/** The topology options a test chooses: the state directory and the ports are the fixture's. */
export type TestTopologyOptions = Omit<TopologyOptions, 'stateDir' | 'ports'>;

export async function withTopology<T>(options: TestTopologyOptions, body: (topology: Topology) => Promise<T>): Promise<T> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-test-'));
  let topology: Topology | null = null;
  try {
    topology = await startTopology({ ...options, stateDir, ports: await loopbackPorts() });
    return await body(topology);
  } finally {
    await topology?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** One topology shared by the tests of a describe block: started in beforeAll, stopped in afterAll. */
export function useTopology(options: TestTopologyOptions = {}): () => Topology {
  let topology: Topology | null = null;
  let stateDir = '';
  beforeAll(async () => {
    stateDir = mkdtempSync(path.join(os.tmpdir(), 'mailproxy-test-'));
    topology = await startTopology({ ...options, stateDir, ports: await loopbackPorts() });
  });
  afterAll(async () => {
    await topology?.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });
  return () => {
    if (!topology) throw new Error('topology not started');
    return topology;
  };
}
