#!/usr/bin/env node

// The only place that calls process.exit: everything else returns exit codes.

// The commands that start Haraka (demo runs both instances, check has Haraka load them) need the Node its
// dependencies declare. Checked before loading anything else, so that an older node says so in one line
// instead of npm's EBADENGINE warnings and whatever Haraka does next; the other commands, --version and
// --help run on any Node.
const MIN_NODE_MAJOR = 22;
const STARTS_HARAKA = new Set(['demo', 'check']);
const [command, ...rest] = process.argv.slice(2);
const major = Number(process.versions.node.split('.')[0]);
if (major < MIN_NODE_MAJOR && STARTS_HARAKA.has(command) && !rest.some((arg) => arg === '--help' || arg === '-h')) {
  process.stderr.write(
    `mailproxy ${command}: this is Node.js ${process.version} (${process.execPath}), and Haraka 3.3.4 needs ${MIN_NODE_MAJOR} or newer; ` +
      `fix: \`source scripts/node-runtime.sh\` in the checkout (puts Node ${MIN_NODE_MAJOR} from the npm registry first on PATH) or install Node.js ${MIN_NODE_MAJOR} LTS, then run it again\n`,
  );
  process.exit(1);
}

const { main } = require('../dist/src/cli.js');

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`mailproxy: ${err?.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
