import { spawn, type ChildProcess } from 'node:child_process';

// Compiles each .ts file as it is required, with the project's own TypeScript (module: CommonJS), so a
// child process runs the sources the unit tests read, not a build that may be stale. Registering the
// extension also makes Node's resolver find extensionless `require('./x')` as x.ts.
const TS_HOOK = `
const ts = require('typescript');
const { readFileSync } = require('node:fs');
require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(outputText, filename);
};
`;

/** Runs a TypeScript file in a child Node process; `process.argv.slice(1)` there is `args`. */
export function spawnTs(script: string, args: string[], cwd: string): ChildProcess {
  return spawn(process.execPath, ['-e', `${TS_HOOK}\nrequire(${JSON.stringify(script)});`, '--', ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
