// mailproxy-outbound (haraka-out): decides where each queued domain goes.
// - Our own domains go straight back to the backend over WireGuard, never out through haraka-in's
//   public address, so mail cannot circle between the two instances.
// - Everything else goes to its MX found in DNS (port `mx_port`, 25 except on test rigs).
import type { HarakaPlugin, Next } from '../haraka-types';

interface OutboundIni {
  main: { mx_port?: number };
  backend: { host?: string; port?: number; bind?: string };
  local: { domains?: string[] };
}

interface Mx {
  exchange: string;
  priority: number;
  port?: number;
  bind?: string;
}

interface MxPlugin extends HarakaPlugin {
  cfg: OutboundIni;
  localDomains: Set<string>;
  load_outbound_ini(): void;
}

export function register(this: MxPlugin): void {
  this.load_outbound_ini();
  this.register_hook('get_mx', 'route');
}

export function load_outbound_ini(this: MxPlugin): void {
  this.cfg = this.config.get('mailproxy-outbound.ini', { booleans: [] }, () => this.load_outbound_ini()) as OutboundIni;
  this.localDomains = new Set((this.cfg.local?.domains ?? []).map((domain) => domain.toLowerCase()));
}

export function route(this: MxPlugin, next: Next, hmail: { logerror(msg: string): void }, domain: string): void {
  const { OK } = require('haraka-constants') as { OK: number };
  const name = domain.toLowerCase();
  if (this.localDomains.has(name)) {
    const { host, port, bind } = this.cfg.backend;
    const mx: Mx = { exchange: String(host), priority: 0, port: Number(port) };
    if (bind) mx.bind = bind;
    return next(OK, [mx]);
  }
  const mxPort = Number(this.cfg.main.mx_port ?? 25);
  if (mxPort === 25) return next();
  const netUtils = require('haraka-net-utils') as { get_mx(domain: string): Promise<Mx[]> };
  netUtils
    .get_mx(name)
    .then((exchanges) => {
      if (exchanges.length === 0) return next();
      for (const mx of exchanges) mx.port = mxPort;
      exchanges.sort((a, b) => a.priority - b.priority);
      next(OK, exchanges);
    })
    .catch((err: Error) => {
      hmail.logerror(`MX lookup for ${name} failed: ${err.message}`);
      next();
    });
}
