// mailproxy-smtp leans on Haraka 3.3.4's Connection.respond internals (the lone-QUIT-after-dot pass and
// the reply rewrites, src/plugins/haraka/patches/connection-replies.ts). This fails as soon as Haraka changes:
// re-read node_modules/haraka/connection.js and re-run test/integration/protocol.test.ts and
// test/e2e/postfix-sender.test.ts before updating it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const connection = readFileSync(path.join(path.dirname(require.resolve('haraka/package.json')), 'connection.js'), 'utf8');

describe('the Haraka internals mailproxy-smtp relies on', () => {
  it('is Haraka 3.3.4', () => {
    expect((require('haraka/package.json') as { version: string }).version).toBe('3.3.4');
  });

  it('decides about bytes pipelined after the final dot in respond(), from awaiting_data_reply and current_data', () => {
    const respond = connection.slice(connection.indexOf('    respond(code, msg, func) {'), connection.indexOf('        // Check to see if DSN object was passed in'));
    expect(respond).toContain('if (this.awaiting_data_reply) {');
    expect(respond).toContain('this.awaiting_data_reply = false');
    expect(respond).toContain('refused_after_data = count_complete_commands(this.current_data)');
    expect(respond).toContain('this.current_data = null');
    // After the reply, a resume processes whatever is still buffered.
    expect(connection).toContain('setImmediate(() => this._process_data())');
  });

  it('feeds every DATA line through accumulate_data, which ends the message only at exactly ".\\r\\n" (patches/connection-replies.ts wraps it)', () => {
    expect(connection).toContain('            this.accumulate_data(line)');
    expect(connection).toContain('    accumulate_data(line) {');
    expect(connection).toContain('if (line.length === 3 && line[0] === 0x2e && line[1] === 0x0d && line[2] === 0x0a) {');
  });

  it('answers 550 for any temporary failure of the outbound layer, whose queue-write failures say "Queueing failed" or "Queue error" (mailproxy-smtp answers 451)', () => {
    const outbound = readFileSync(path.join(path.dirname(require.resolve('haraka/package.json')), 'outbound', 'index.js'), 'utf8');
    expect(outbound).toContain("reject('Queueing failed')");
    expect(outbound).toContain("reject('Queue error')");
    expect(outbound).toContain('if (next) next(constants.denysoft, err)');
    const respond = connection.slice(connection.indexOf('                outbound.send_trans_email(this.transaction, (retval2, msg2) => {'));
    expect(respond).toContain("this.respond(550, msg2 || 'Internal Server Error', () => {");
  });

  it('accepts sessions as pluggableStreams over the net.Socket (no TCP_NODELAY), hands them to connect_init as connection.client, and writes one reply per respond() (haraka/socket.ts)', () => {
    const source = (file: string) => readFileSync(path.join(path.dirname(require.resolve('haraka/package.json')), file), 'utf8');
    const server = source('server.js');
    expect(server).toContain('        server = tls_socket.createServer(onConnect)');
    expect(server).toContain('        const connection = conn.createConnection(client, server, Server.cfg)');
    const tlsSocket = source('tls_socket.js');
    expect(tlsSocket).toContain('    const server = net.createServer((cryptoSocket) => {\n        const socket = new pluggableStream(cryptoSocket)');
    expect(tlsSocket).toContain('    attach(socket) {\n        this.targetsocket = socket');
    expect(tlsSocket).toContain('    setNoDelay(/* true||false */) {}');
    expect(connection).toContain('        this.client = client');
    expect(connection).toContain("plugins.run_hooks('connect_init', self)");
    expect(connection).toContain('            this.client.write(buf)');
    expect(`${server}${connection}`).not.toMatch(/setNoDelay|noDelay/);
  });
});
