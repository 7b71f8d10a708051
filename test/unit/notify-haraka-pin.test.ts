// mailproxy-notify leans on Haraka 3.3.4's start-up and outbound queue internals: it learns that the queue is
// loaded by wrapping outbound.init_queue (src/plugins/haraka/patches/outbound-init-queue.ts) and reads the
// queue sizes from outbound/queue.js. This fails as soon as Haraka changes: re-read node_modules/haraka/server.js
// and outbound/, and re-run test/integration/notify.test.ts before updating it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const harakaDir = path.dirname(require.resolve('haraka/package.json'));
const source = (file: string) => readFileSync(path.join(harakaDir, file), 'utf8');

describe('the Haraka internals mailproxy-notify relies on', () => {
  it('is Haraka 3.3.4', () => {
    expect((require('haraka/package.json') as { version: string }).version).toBe('3.3.4');
  });

  it('loads the queue after the init_master hooks through outbound.init_queue, looked up on the module at call time', () => {
    const server = source('server.js');
    expect(server).toContain("const outbound = require('./outbound')");
    expect(server).toContain("Server.plugins.run_hooks('init_master', Server)");
    const respond = server.slice(server.indexOf('Server.init_master_respond = async (retval, msg) => {'));
    expect(respond).toContain('            await outbound.init_queue()\n');
    expect(respond.indexOf('await outbound.init_queue()')).toBeLessThan(respond.indexOf('Server.setup_http_listeners()'));
    expect(source('outbound/index.js')).toMatch(/const qlfns = \[[^\]]*'init_queue',/);
  });

  it('keeps the due and the deferred deliveries in outbound/queue.js delivery_queue and temp_fail_queue, each with length()', () => {
    const queue = source('outbound/queue.js');
    expect(queue).toContain('const delivery_queue = (exports.delivery_queue = new Queue(');
    expect(queue).toContain('const temp_fail_queue = (exports.temp_fail_queue = new TimerQueue(');
    expect(queue).toContain('class Queue {');
    expect(queue).toContain('    length() {');
    expect(queue).toContain('const TimerQueue = utils.TimerQueue');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { TimerQueue } = require(require.resolve('haraka-utils', { paths: [harakaDir] })) as { TimerQueue: { prototype: { length?: unknown } } };
    expect(typeof TimerQueue.prototype.length).toBe('function');
  });
});
