// Runs every check of `mailproxy health` against one config: each probe (probes.ts) measures, each
// judge (checks.ts) decides. Independent probes run at once; the backend probe runs before the WireGuard
// check, so that an idle tunnel (no PersistentKeepalive) has just handshaken when `wg` is read.
import type { Config } from '../config/schema';
import { parseHostPort, probeTarget, type HostPort } from '../config/net';
import { inboundListen, mtaStsListen, queueDirFor } from '../config/paths';
import { UNIT_NAMES } from '../render/systemd';
import { judgeBackend, judgeBanner, judgeDisk, judgeQueue, judgeTls, judgeUnit, judgeWireguard } from './checks';
import { judgeKept, judgeRecipientCache } from './kept';
import { probeBackend, probeBanner, probeDisk, probeKept, probeQueue, probeRecipientCache, probeStarttls, probeUnit, probeWireguard } from './probes';
import { exists } from '../plugins/store-forward/spool-files';
import { storePathsFor } from '../plugins/store-forward/store-dir';
import { VERIFY_DEFAULTS } from '../plugins/store-forward/verify-cache';
import { timedVerdict, type Verdict } from '../report/status';
import { report, type CheckResult, type HealthReport } from './status';
import { resolverValidates } from '../dane/self-check';
import { createDnssecResolver } from '../dane/resolver';
import { nodeProblem, probeNode } from '../haraka/node-runtime';
import { hostedPolicy, policyHosts } from '../mtasts-host/policy';
import { probePolicyService } from '../mtasts-host/probe';
import { judgeMtaStsService } from './mta-sts';

export interface HealthDeps {
  /** The environment the external commands run with (PATH finds systemctl and wg). */
  env: NodeJS.ProcessEnv;
  now?: () => Date;
}

// Where to connect to reach a listener: in config/net.ts, so that `cert deploy` finds haraka-in without
// importing health.
export { probeTarget };

async function timed(name: string, body: () => Promise<Verdict>): Promise<CheckResult> {
  const { verdict, ms } = await timedVerdict(name, body);
  return { name, status: verdict.status, detail: verdict.detail, ms: Math.round(ms), metrics: verdict.metrics ?? {} };
}

/** haraka-out asks this resolver before every delivery to the internet: without it, all such mail waits. */
async function daneResolverCheck(address: string): Promise<Verdict> {
  const target = parseHostPort(address);
  if (!target) return { status: 'UNKNOWN', detail: `outbound.dane_resolver ${address} is not ADDRESS:PORT` };
  const result = await resolverValidates(createDnssecResolver({ ...target, timeoutMs: 3000 }));
  if (result.ok) return { status: 'OK', detail: `DANE resolver ${address}: ${result.text}` };
  return {
    status: 'CRITICAL',
    detail: `DANE resolver ${address}: ${result.text}; haraka-out keeps mail to the internet queued until it validates (systemctl status unbound)`,
  };
}

/**
 * The backup MX's checks: kept mail and the recipient cache while inbound.store_and_forward is on; once it
 * is off, kept mail only when a spool was left behind (nothing hands it on then); none without one.
 */
async function keptChecks(config: Config, now: () => Date): Promise<CheckResult[]> {
  const h = config.health;
  const store = config.inbound.store_and_forward;
  const paths = storePathsFor(config);
  if (!store.enabled && !(await exists(paths.spool))) return [];
  const kept = timed('haraka-in.kept', async () =>
    judgeKept(await probeKept(paths.spool), now(), {
      keptWarning: h.kept_warning,
      keptCritical: h.kept_critical,
      oldestWarning: h.kept_oldest_warning,
      oldestCritical: h.kept_oldest_critical,
      heldWarning: h.held_warning,
      heldCritical: h.held_critical,
      maxDiskBytes: store.max_disk_mb * 1024 * 1024,
      enabled: store.enabled,
    }),
  );
  if (!store.enabled) return [await kept];
  const recipients = timed('haraka-in.recipients', async () =>
    judgeRecipientCache(await probeRecipientCache(paths.recipients, { ...VERIFY_DEFAULTS, maxEntries: store.cache_size }, now()), paths.recipients),
  );
  return Promise.all([kept, recipients]);
}

export async function runHealthChecks(config: Config, deps: HealthDeps): Promise<HealthReport> {
  const now = deps.now ?? (() => new Date());
  const h = config.health;
  const timeoutMs = h.smtp_timeout * 1000;
  const inbound = inboundListen(config)
    .map(probeTarget)
    .filter((target): target is HostPort => target !== null);
  const outbound = [probeTarget(config.outbound.listen)].filter((target): target is HostPort => target !== null);
  const banner = async (targets: HostPort[]) => judgeBanner(config.hostname, await Promise.all(targets.map((target) => probeBanner(target, timeoutMs))));

  const tunnel = (async () => {
    const backend = await timed('backend', async () =>
      judgeBackend(
        await probeBackend({ host: config.backend.host, port: config.backend.port, localAddress: config.wireguard.address }, config.hostname, timeoutMs, config.backend.starttls),
        { port: config.backend.port, requireXclient: config.backend.require_xclient, starttls: config.backend.starttls },
      ),
    );
    const wireguard = await timed('wireguard', async () =>
      judgeWireguard(await probeWireguard(config.wireguard.interface, deps.env), config.backend.host, now(), {
        warning: h.handshake_warning,
        critical: h.handshake_critical,
      }),
    );
    return { backend, wireguard };
  })();

  const checks = await Promise.all<CheckResult | CheckResult[]>([
    timed('haraka-in.unit', async () => judgeUnit(UNIT_NAMES['haraka-in'], await probeUnit(UNIT_NAMES['haraka-in'], deps.env))),
    timed('haraka-out.unit', async () => judgeUnit(UNIT_NAMES['haraka-out'], await probeUnit(UNIT_NAMES['haraka-out'], deps.env))),
    timed('haraka-in.banner', () => banner(inbound)),
    // One listener is enough: every address of haraka-in is the same process with the same tls.ini.
    timed('haraka-in.tls', async () => {
      const target = inbound[0];
      if (!target) return { status: 'UNKNOWN', detail: 'haraka-in has no listen address to probe' };
      return judgeTls(config.hostname, await probeStarttls(target, config.hostname, timeoutMs), now(), h.cert_warning_days);
    }),
    timed('haraka-out.banner', () => banner(outbound)),
    tunnel.then((done) => done.backend),
    tunnel.then((done) => done.wireguard),
    timed('haraka-out.queue', async () =>
      judgeQueue(await probeQueue(queueDirFor(config, 'haraka-out')), now(), {
        queueWarning: h.queue_warning,
        queueCritical: h.queue_critical,
        oldestWarning: h.oldest_warning,
        oldestCritical: h.oldest_critical,
      }),
    ),
    timed('node', async () => {
      const probe = await probeNode(config.system.node);
      const problem = nodeProblem(config.system.node, probe);
      if (problem || !probe.ok) return { status: 'CRITICAL', detail: problem ?? config.system.node };
      return { status: 'OK', detail: `system.node ${config.system.node} is ${probe.version}` };
    }),
    timed('disk', async () => judgeDisk(await probeDisk(config.state_dir), { warningMb: h.disk_warning_mb, criticalMb: h.disk_critical_mb })),
    ...(config.outbound.dane ? [timed('haraka-out.dane', () => daneResolverCheck(config.outbound.dane_resolver))] : []),
    keptChecks(config, now),
    ...(config.inbound.mta_sts.enabled
      ? [
          timed('mta-sts.unit', async () => judgeUnit(UNIT_NAMES.mtaSts, await probeUnit(UNIT_NAMES.mtaSts, deps.env))),
          timed('mta-sts.https', async () => {
            const targets = mtaStsListen(config)
              .map(probeTarget)
              .filter((target): target is HostPort => target !== null);
            const answers = await Promise.all(targets.flatMap((target) => policyHosts(config).map((host) => probePolicyService(target, host, timeoutMs))));
            return judgeMtaStsService(answers, hostedPolicy(config), now());
          }),
        ]
      : []),
  ]);
  return report(checks.flat(), now());
}
