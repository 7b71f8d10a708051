// Test fixture for the backup MX: haraka-in's spool areas as the tests read them, and the backend stand-in
// started again on the topology's backend port ("the backend is back"), each one closed after the test.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach } from 'vitest';
import type { Topology } from '../../src/demo/topology';
import { LOOPBACK } from '../../src/demo/topology';
import { startSmtpSink, type SinkOptions, type SmtpSink } from '../../src/testpeers/smtp-sink';

export function useKeptMail(topology: () => Topology, defaults: Partial<SinkOptions> = {}) {
  const sinks: SmtpSink[] = [];
  afterEach(async () => {
    for (const sink of sinks.splice(0)) await sink.close();
  });
  const spoolDir = (area: string) => path.join(topology().config.state_dir, 'haraka-in', 'store', 'spool', area);
  const count = (area: string) => (existsSync(spoolDir(area)) ? readdirSync(spoolDir(area)).filter((name) => name.endsWith('.json')).length : 0);
  const backendBack = async (options: Partial<SinkOptions> = {}) => {
    const sink = await startSmtpSink({ host: LOOPBACK.backend, port: topology().config.backend.port, name: 'backend.test', xclient: true, ...defaults, ...options });
    sinks.push(sink);
    return sink;
  };
  return { sinks, spoolDir, count, backendBack };
}
