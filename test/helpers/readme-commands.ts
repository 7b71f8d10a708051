// The `mailproxy …` command lines README.md shows, as a reader would copy them: every code span, and every
// line of a ```sh block, that runs `mailproxy` (alone, or at the end of a pipe). A table cell's `\|` is
// read as `|`, a span broken over two lines as one line, and a trailing `# comment` of a block line is
// dropped. Pure.

export interface ReadmeCommand {
  /** The command line as written (whitespace collapsed). */
  text: string;
  /** 1-based line of README.md where it starts. */
  line: number;
  /** Runs as written: no placeholder (FILE, KEY, [--option], <name>, …, list|count). */
  concrete: boolean;
}

/** `mailproxy` at the start, or after the last `|` of a pipe (`journalctl … | mailproxy stats`). */
function runsMailproxy(text: string): boolean {
  const parts = text.split(' | ');
  return /^mailproxy\s/.test(parts[parts.length - 1] ?? '');
}

function isConcrete(text: string): boolean {
  if (/[[\]<>…]|\.\.\./.test(text)) return false;
  // Alternatives (`list|count`) inside a command; a pipe between commands has spaces around it.
  if (text.split(' | ').some((part) => part.includes('|'))) return false;
  // FILE, KEY, VALUE, ID, A (a capital word standing for a value); journalctl's and mailproxy's options are lower case.
  return !/(^|[\s=:])[A-Z][A-Z_]*(?=$|[\s:.,=])/.test(text);
}

export function readmeCommands(markdown: string): ReadmeCommand[] {
  const lines = markdown.split('\n');
  const found: ReadmeCommand[] = [];
  const add = (raw: string, line: number) => {
    const text = raw.replace(/\\\|/g, '|').replace(/\s+/g, ' ').trim();
    if (runsMailproxy(text)) found.push({ text, line, concrete: isConcrete(text) });
  };
  // Fenced blocks: sh lines are commands; every fenced line is blanked before the code spans are read.
  const prose: string[] = [];
  let fence: { lang: string } | null = null;
  for (const [index, line] of lines.entries()) {
    const marker = /^\s*```\s*(\S*)\s*$/.exec(line);
    if (marker) {
      fence = fence ? null : { lang: marker[1] ?? '' };
      prose.push('');
      continue;
    }
    if (fence) {
      if (fence.lang === 'sh') add(line.replace(/\s+#.*$/, ''), index + 1);
      prose.push('');
      continue;
    }
    prose.push(line);
  }
  // Code spans, which may continue on the next line of a paragraph.
  const text = prose.join('\n');
  for (const match of text.matchAll(/`([^`]+)`/g)) {
    add(match[1] ?? '', text.slice(0, match.index).split('\n').length);
  }
  return found.sort((a, b) => a.line - b.line);
}
