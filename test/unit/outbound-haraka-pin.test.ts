// mailproxy-outbound leans on Haraka 3.3.4's outbound internals (src/plugins/haraka/patches/outbound-tls.ts, the flush accounting
// and the DSN fields in index.ts). This test fails as soon as Haraka changes: re-read node_modules/haraka/outbound/
// and re-run test/integration/outbound-tls-fallback, mta-sts-delivery, dane, queue and delivery before updating it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { harakaOutboundTls, installTlsFallback } from '../../src/plugins/haraka/patches/outbound-tls';

const harakaDir = path.dirname(require.resolve('haraka/package.json'));
const source = (file: string) => readFileSync(path.join(harakaDir, file), 'utf8');

describe('the Haraka internals mailproxy-outbound relies on', () => {
  it('is Haraka 3.3.4', () => {
    expect((require('haraka/package.json') as { version: string }).version).toBe('3.3.4');
  });

  it('asks the item itself, per MX connection, whether TLS is required (patches/outbound-tls.ts answers per message)', () => {
    const hmail = source('outbound/hmail.js');
    expect(hmail).toContain('this.force_tls = this.get_force_tls(mx)');
    expect(hmail).toContain('    get_force_tls(mx) {');
    expect(hmail).toContain('module.exports = HMailItem');
  });

  it('asks OutboundTLS about a failed handshake only off the force-TLS path, and tells it about every TLS error', () => {
    const hmail = source('outbound/hmail.js');
    // Opportunistic path: after the no_tls_hosts lists, check_tls_nogo decides; force-TLS returns before it.
    const forced = hmail.indexOf('if (self.force_tls) {');
    const check = hmail.indexOf('return obtls.check_tls_nogo(');
    expect(forced).toBeGreaterThan(0);
    expect(check).toBeGreaterThan(forced);
    expect(hmail.slice(forced, check)).toContain('return self.temp_fail(`No TLS available but required by configuration.`)');
    expect(hmail).toContain(
      "if (err.source === 'tls')\n                // exception thrown from tls_socket during tls upgrade\n                return obtls.mark_tls_nogo(host, () => {",
    );
    expect(hmail).toContain('self.loginfo(`TLS disabled for ${host} because it was marked as non-TLS on ${when}`)');
  });

  it('counts a failure in num_failures, bounces past the intervals, and takes a deferred DENYSOFT as seconds', () => {
    const hmail = source('outbound/hmail.js');
    expect(hmail).toContain(
      'this.num_failures++\n\n        // Test for max failures which is configurable.\n        if (this.num_failures > obc.cfg.temp_fail_intervals.length) {',
    );
    expect(hmail).toContain("plugins.run_hooks('deferred', this, { delay, err, ...(extra || {}) })");
    expect(hmail).toContain('delay = parseInt(msg, 10) * 1000');
    expect(hmail).toContain('parts.attempts = this.num_failures');
    expect(hmail).toContain("plugins.run_hooks('send_email', this)");
    expect(hmail).toContain('this.todo.rcpt_to.map((a) => new Address(a))');
  });

  it('builds the bounce from outbound.bounce_message and the dsn_* fields of each recipient', () => {
    const hmail = source('outbound/hmail.js');
    expect(hmail).toContain("config.get('outbound.bounce_message', 'data')");
    expect(hmail).toContain('return `${single_line(recip.original)}: ${single_line(recip.reason)}`');
    for (const field of ['dsn_action', 'dsn_status', 'dsn_code', 'dsn_msg', 'dsn_remote_mta', 'dsn_smtp_code', 'dsn_smtp_extc', 'dsn_smtp_response']) {
      expect(hmail).toContain(`rcpt_to.${field}`);
    }
  });

  it('upgrades through node:tls.connect as a module property, judges `authorized` on secureConnect, and temp-fails a forced TLS that is not (patches/outbound-tls.ts)', () => {
    const tlsSocket = source('tls_socket.js');
    expect(tlsSocket).toContain("const tls = require('node:tls')");
    expect(tlsSocket).toContain('        const cleartext = tls.connect(options)');
    expect(tlsSocket).toContain(
      "        cleartext.once('secureConnect', () => {\n            log.debug('client TLS secured.')\n            const cipher = cleartext.getCipher()\n            cipher.version = cleartext.getProtocol()\n            if (cb2) cb2(cleartext.authorized, cleartext.authorizationError, cleartext.getPeerCertificate(), cipher)",
    );
    const hmail = source('outbound/hmail.js');
    expect(hmail).toContain('const tls_options = obtls.get_tls_options(mx)\n                    if (self.force_tls) tls_options.rejectUnauthorized = true');
    expect(hmail).toContain(
      "if (self.force_tls && !authorized) {\n                            processing_mail = false\n                            socket.end()\n                            self.temp_fail('Host failed TLS verification required by configuration.')",
    );
    // Both handshake events of the TLS socket reach hmail.js, which writes EHLO on 'secure': patches/outbound-tls.ts swallows
    // both after a mismatch (else EHLO went into the destroyed socket: "[CRIT] Socket write failed unexpectedly").
    expect(tlsSocket).toContain(
      "        this.targetsocket.on('secureConnect', (a, b) => {\n            this.emit('secureConnect', a, b)\n            this.emit('secure', a, b)\n        })\n        this.targetsocket.on('secure', (a, b) => {\n            this.emit('secure', a, b)\n        })",
    );
    expect(hmail).toContain(
      "                socket.once('secure', () => {\n                    // Set this flag so we don't try STARTTLS again if it\n                    // is incorrectly offered at EHLO once we are secured.\n                    secured = true\n                    send_command(mx.using_lmtp ? 'LHLO' : 'EHLO', mx.bind_helo)",
    );
    expect(hmail).toContain('self.logcrit(`Socket write failed unexpectedly: ${err}`)');
    // The options get_tls_options returns reach tls.connect as they are, or spread (which keeps symbol keys).
    expect(tlsSocket).toContain('options = { ...options, ...getCertFor(exports.cfg.mutual_auth_hosts[host]) }');
    expect(tlsSocket).toContain("        cleartext.on('error', (err) => {\n            err.source = 'tls'\n            socket.emit('error', err)");
    // The SNI is the name an MX address was found under; a plugin's MX given as an address keeps its from_dns.
    expect(source('outbound/tls.js')).toContain('if (mx.from_dns) return { ...this.cfg, servername: mx.from_dns }');
    const netUtils = readFileSync(require.resolve('haraka-net-utils/lib/get_mx.js'), 'utf8');
    expect(netUtils).toContain('    if (net.isIP(mx.exchange)) {\n      promises.push(mx) // already resolved');
    expect(readFileSync(require.resolve('haraka-net-utils/lib/HarakaMx.js'), 'utf8')).toContain("'from_dns',");
  });

  it('replaces the Redis-backed TLS memory of the OutboundTLS singleton, answering as before outside a delivery', () => {
    const obtls = harakaOutboundTls();
    const original = obtls.check_tls_nogo;
    expect(installTlsFallback()).toBe(true);
    expect(obtls.check_tls_nogo).not.toBe(original);
    expect(installTlsFallback()).toBe(true);
    const answers: string[] = [];
    obtls.check_tls_nogo(
      '192.0.2.1',
      () => answers.push('ok'),
      () => answers.push('nogo'),
    );
    obtls.mark_tls_nogo('192.0.2.1', () => answers.push('marked'));
    obtls.check_tls_nogo(
      '192.0.2.1',
      () => answers.push('ok'),
      () => answers.push('nogo'),
    );
    expect(answers).toEqual(['ok', 'marked', 'ok']);
  });

  it('opens each MX connection through tls_socket.connect as a module property, a pluggableStream over net.connect, and writes the dot right after piping the body (haraka/patches/connect-no-delay.ts sets TCP_NODELAY)', () => {
    const pool = source('outbound/client_pool.js');
    expect(pool).toContain("const tls_socket = require('../tls_socket')");
    expect(pool).toContain('    const socket = tls_socket.connect(socketArgs)');
    const tlsSocket = source('tls_socket.js');
    expect(tlsSocket).toContain('    const cryptoSocket = net.connect(conn_options)\n    const socket = new pluggableStream(cryptoSocket)');
    expect(tlsSocket).toContain('exports.connect = connect\nexports.createConnection = connect');
    expect(tlsSocket).toContain('    attach(socket) {\n        this.targetsocket = socket');
    // Its wrapper ignores setNoDelay, and nothing else in Haraka sets TCP_NODELAY.
    expect(tlsSocket).toContain('    setNoDelay(/* true||false */) {}');
    const hmail = source('outbound/hmail.js');
    expect(hmail).toContain(
      "data_stream.on('end', () => {\n                        send_command(mx.using_lmtp ? 'dot_lmtp' : 'dot')\n                    })\n                    data_stream.pipe(socket, { end: false })",
    );
    for (const file of ['outbound/hmail.js', 'outbound/client_pool.js', 'server.js', 'connection.js']) expect(source(file)).not.toMatch(/setNoDelay|noDelay/);
  });
});
