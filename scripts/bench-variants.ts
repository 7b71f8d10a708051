// The haraka-in variants `npm run bench` measures side by side: the forwarder, stock Haraka's smtp_forward,
// Haraka without forwarding, and the edge checks as installed. Each is a haraka-in pinned to CPU 0 in front
// of the XCLIENT sink (xclient-sink.ts), which advertises XCLIENT with ADDR as the real Postfix does, so
// mailproxy-forward sends XCLIENT in every session, as in production.
import path from 'node:path';
import { LOOPBACK, type Topology } from '../src/demo/topology';
import { portsFrom, startPinnedHarakaIn } from './bench-setup';

export type Variant = 'mailproxy' | 'stock' | 'discard' | 'bare' | EdgeVariant;

/**
 * The cost of mailproxy-edge: haraka-in without it, with its default checks (early talker refused, HELO
 * logged, no DNS list: the defaults ask no DNS at all), and with one DNSBL zone on the loopback DNS
 * server (mode refuse, nobody listed). Edge checks skip loopback clients, so these three load a plugin
 * that makes every client public (as test/integration/edge.test.ts does), and log at notice, the level
 * the decision lines are written at (every variant logs Haraka's connect and disconnect lines too).
 */
type EdgeVariant = 'noedge' | 'edge' | 'edgednsbl' | 'rendered' | 'reuse';
export const EDGE_VARIANTS: ReadonlySet<string> = new Set<EdgeVariant>(['noedge', 'edge', 'edgednsbl', 'rendered', 'reuse']);
const PUBLIC_CLIENTS_PLUGIN = `exports.register = function () { this.register_hook('connect_init', 'make_public') }
exports.make_public = function (next, connection) { connection.remote.is_private = false; connection.remote.is_local = false; next() }
`;
/** A never-seen loopback address per connection of the latency client (edge variants): every session then
 * pays the uncached lookups (rDNS, and the DNSBL query) as a new sender does. */
export const freshAddress = (i: number) => `127.${1 + (Math.floor(i / 64516) % 200)}.${Math.floor(i / 254) % 254}.${1 + (i % 254)}`;

export const LABELS: Record<Variant | 'direct', string> = {
  direct: 'direct to the XCLIENT sink',
  mailproxy: 'haraka-in, mailproxy-forward',
  stock: 'haraka-in, stock queue/smtp_forward',
  discard: 'haraka-in, queue/discard',
  bare: 'bare Haraka, queue/discard',
  noedge: 'haraka-in without mailproxy-edge',
  edge: 'haraka-in, default edge checks',
  edgednsbl: 'haraka-in, edge + 1 DNSBL zone',
  rendered: 'haraka-in as rendered (log level info)',
  reuse: 'as rendered + backend.reuse_sessions',
};

/** haraka-in on CPU 0 in front of the sink, with mailproxy-forward or a plugin swapped in for it. */
export async function startHarakaIn(root: string, variant: Variant, backendPort: number, firstPort: number): Promise<Topology> {
  return startPinnedHarakaIn({
    stateDir: path.join(root, variant),
    ports: { ...portsFrom(firstPort), backend: backendPort },
    tweak: (config) => {
      // The forwarder alone: its log lines are not measured (`rendered` logs as installed, at info).
      config.log_level = 'error';
      if (EDGE_VARIANTS.has(variant)) {
        config.log_level = variant === 'rendered' || variant === 'reuse' ? 'info' : 'notice';
        // The sink answers every XCLIENT, as Postfix with smtpd_authorized_xclient_hosts=static:all.
        if (variant === 'reuse') config.backend = { ...config.backend, reuse_sessions: true };
        // All load comes from one or two addresses: the per-address limits would refuse it (they stay loaded).
        config.limits = { ...config.limits, exempt: ['127.0.0.0/8'] };
      }
      if (variant === 'edgednsbl') config.edge = { dnsbl: { mode: 'refuse', zones: [{ zone: 'bl.bench.test' }] } };
    },
    // queue/discard only drops messages when told to, so nothing is dropped by accident.
    ...(variant === 'discard' || variant === 'bare' ? { harakaEnv: { YES_REALLY_DO_DISCARD: '1' } } : {}),
    transformFiles: (files) => {
      const plugins = files.get('haraka-in/config/plugins') ?? '';
      // Without mailproxy-forward, recipients are accepted by Haraka's rcpt_to.in_host_list (host_list is rendered).
      if (variant === 'stock') {
        files.set('haraka-in/config/plugins', plugins.replace('mailproxy-forward\n', 'rcpt_to.in_host_list\nqueue/smtp_forward\n'));
        files.set('haraka-in/config/smtp_forward.ini', `host=${LOOPBACK.backend}\nport=${backendPort}\nenable_outbound=false\n`);
      }
      if (variant === 'discard') files.set('haraka-in/config/plugins', plugins.replace('mailproxy-forward\n', 'rcpt_to.in_host_list\nqueue/discard\n'));
      // mailproxy-dns only points Haraka's own rDNS lookup at the loopback DNS server.
      if (variant === 'bare') files.set('haraka-in/config/plugins', 'mailproxy-dns\nrcpt_to.in_host_list\nqueue/discard\n');
      if (EDGE_VARIANTS.has(variant)) {
        const rendered = files.get('haraka-in/config/plugins') ?? '';
        const edgeless = variant === 'noedge' ? rendered.replace('mailproxy-edge\n', '') : rendered;
        files.set('haraka-in/config/plugins', edgeless.replace('mailproxy-dns\n', 'bench_public_clients\nmailproxy-dns\n'));
        files.set('haraka-in/plugins/bench_public_clients.js', PUBLIC_CLIENTS_PLUGIN);
      }
    },
  });
}
