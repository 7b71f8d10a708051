// Pure: the key and certificate paths in a rendered tls.ini, read and rewritten in place. Only the values
// of `key=` and `cert=` in [main] change; every other byte (the cipher policy, comments) stays, so a
// deploy changes exactly what it must and a later `mailproxy render` (which reads the deploy record)
// writes the same text.

export interface TlsPair {
  key: string;
  cert: string;
}

const SECTION = /^\s*\[([^\]]*)\]\s*$/;
const ENTRY = /^(\s*(key|cert)\s*=\s*)(.*?)\s*$/;

function scan(text: string, visit: (line: string, index: number, entry: RegExpExecArray | null) => void): void {
  // haraka-config puts keys above the first section into [main] too.
  let section = 'main';
  text.split('\n').forEach((line, index) => {
    const header = SECTION.exec(line);
    if (header) {
      section = (header[1] ?? '').trim();
      return;
    }
    visit(line, index, section === 'main' && !/^\s*[;#]/.test(line) ? ENTRY.exec(line) : null);
  });
}

/** The [main] key and cert of a tls.ini; null when either is missing. */
export function readTlsPair(text: string): TlsPair | null {
  const found: Partial<TlsPair> = {};
  scan(text, (_line, _index, entry) => {
    if (entry) found[entry[2] as keyof TlsPair] = entry[3] as string;
  });
  return found.key !== undefined && found.cert !== undefined ? { key: found.key, cert: found.cert } : null;
}

/** The same tls.ini with [main] key and cert set to `pair`; throws when the file has no such lines. */
export function withTlsPair(text: string, pair: TlsPair, what: string): string {
  for (const value of [pair.key, pair.cert]) {
    if (/[\r\n]/.test(value)) throw new Error(`a tls.ini path must be one line: ${JSON.stringify(value)}`);
  }
  const lines = text.split('\n');
  const seen = new Set<string>();
  scan(text, (_line, index, entry) => {
    if (!entry) return;
    const name = entry[2] as keyof TlsPair;
    if (seen.has(name)) throw new Error(`${what} sets ${name} twice in [main]: render it again with \`mailproxy render\``);
    seen.add(name);
    lines[index] = `${entry[1]}${pair[name]}`;
  });
  for (const name of ['key', 'cert']) {
    if (!seen.has(name)) throw new Error(`${what} has no ${name}= in [main]: render it with \`mailproxy render\` first`);
  }
  return lines.join('\n');
}
