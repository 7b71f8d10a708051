// `mailproxy render`: the config's Haraka instance directories, and with --units/--system its systemd
// units (and with --unbound/--system the DANE resolver's unbound drop-in), written by the one effectful
// edge (write.ts).
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { effectiveTls } from '../haraka/deploy-record';
import { renderInstances } from './haraka';
import { renderUnits } from './systemd';
import { renderUnbound, UNBOUND_CONF_DIR } from './unbound';
import { writeRendered } from './write';

async function runRenderCommand(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      out: { type: 'string' },
      units: { type: 'string' },
      unbound: { type: 'string' },
      system: { type: 'boolean', default: false },
      root: { type: 'string', default: '/' },
    },
  });
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  const { config, source } = loaded;
  // Defaults are the installed layout (system.instances_dir, system.units_dir), below --root when an
  // installer writes into a throwaway root.
  const installed = (dir: string) => path.join(values.root, dir);
  // tls.ini names the files of the last `cert deploy` (its record under state_dir/tls), so that a render
  // after a deploy keeps what the deploy installed; without a record, tls.key and tls.cert.
  const tls = effectiveTls(config, values.root);
  if (tls.ignored) io.stderr.write(`warning: not using the last cert deploy: ${tls.ignored}; tls.ini names tls.key and tls.cert\n`);
  else if (tls.from === 'cert deploy') io.stdout.write(`tls.ini: key and certificate of the last cert deploy (${tls.cert}), not tls.key/tls.cert\n`);
  const rendered = renderInstances(config, { source, ...(tls.from === 'cert deploy' ? { tls: { key: tls.key, cert: tls.cert } } : {}) });
  const outputs: [string, Map<string, string>][] = [[values.out ?? installed(config.system.instances_dir), rendered]];
  const unitsDir = values.units ?? (values.system ? installed(config.system.units_dir) : null);
  if (unitsDir) outputs.push([unitsDir, renderUnits(config, { source })]);
  const unboundDir = values.unbound ?? (values.system ? installed(UNBOUND_CONF_DIR) : null);
  if (unboundDir) outputs.push([unboundDir, renderUnbound(config, { source })]);
  for (const [dir, files] of outputs) {
    const report = await writeRendered(dir, files);
    for (const file of report.written) io.stdout.write(`wrote ${path.join(dir, file)}\n`);
    for (const file of report.removed) io.stdout.write(`removed ${path.join(dir, file)}\n`);
    io.stdout.write(`${dir}: ${report.written.length} written, ${report.removed.length} removed, ${report.unchanged.length} unchanged\n`);
  }
  return 0;
}

export const command: Command = {
  name: 'render',
  usage: [
    {
      synopsis: 'render --config FILE [--out DIR] [--units DIR] [--unbound DIR] [--system] [--root DIR]',
      about: [
        'write both Haraka instance dirs (default --out: system.instances_dir),',
        'and the systemd units (mailproxy-haraka-in.service, ...) into --units',
        'DIR, or with --system into system.units_dir; the unbound drop-in of',
        'the DANE resolver into --unbound DIR, or with --system into',
        '/etc/unbound/unbound.conf.d; --root prefixes the default dirs (an',
        "installer's throwaway root)",
      ],
    },
  ],
  exitStyle: 'plain',
  run: runRenderCommand,
};
