#!/usr/bin/env node
'use strict';
// The only place that calls process.exit: everything else returns exit codes.
const { main } = require('../dist/src/cli.js');

main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`mailproxy: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
