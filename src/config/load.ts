// Parses and validates config text. Pure: the caller reads the file. Every error names the key, the value,
// what was expected and the line, so `mailproxy check` can be read without opening the schema.
import { isMap, isNode, isScalar, isSeq, LineCounter, Parser, parseDocument, Scalar, type Document, type YAMLError } from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema';
import { checkRules, checkWarnings, type RuleIssue } from './rules';

export interface ConfigError {
  key: string;
  value: unknown;
  message: string;
  /** The key's line; for a key not in the file, the line of the nearest enclosing key that is; null when none is. */
  line: number | null;
  /** Set for YAML syntax errors only: where the problem starts. */
  column?: number;
  /** The key is not in the file (missing, or a default that a rule checks). */
  absent?: true;
}

/** The key of a YAML syntax error: the file is not YAML, so no config key is involved. */
export const YAML_SYNTAX_KEY = '(yaml)';

/** `warnings` are allowed but worth a second look, in the same shape as errors (`mailproxy check` prints them). */
export type LoadResult = { ok: true; config: Config; warnings: ConfigError[] } | { ok: false; errors: ConfigError[] };

export class ConfigInvalidError extends Error {
  constructor(
    readonly source: string,
    readonly errors: ConfigError[],
  ) {
    super(errors.map((error) => formatConfigError(source, error)).join('\n'));
    this.name = 'ConfigInvalidError';
  }
}

export function formatKey(path: readonly PropertyKey[]): string {
  let key = '';
  for (const part of path) {
    if (typeof part === 'number') key += `[${part}]`;
    else key += key ? `.${String(part)}` : String(part);
  }
  return key || '(top level)';
}

/** The value of an unknown key: shown as "(value hidden)". */
export const HIDDEN = Symbol('hidden value');

export function formatConfigError(source: string, error: ConfigError): string {
  const where = error.line === null ? source : `${source}:${error.line}${error.column === undefined ? '' : `:${error.column}`}`;
  if (error.key === YAML_SYNTAX_KEY) return `${where}: YAML syntax error: ${error.message}`;
  const value = error.value === HIDDEN ? '(value hidden)' : error.value === undefined ? 'missing' : JSON.stringify(error.value);
  // A key not in the file has no line of its own: the line shown is its parent's, or there is none.
  const absent = !error.absent ? '' : error.value !== undefined ? ' (the default: not in the file)' : error.line === null ? ' (not in the file)' : '';
  return `${where}: ${error.key}: ${value}${absent}: ${error.message}`;
}

/** The line of the key (or list item) at `path` itself, or null when the file does not have it. */
function ownLine(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): number | null {
  const last = path.at(-1);
  if (last === undefined) return isNode(doc.contents) && doc.contents.range ? counter.linePos(doc.contents.range[0]).line : null;
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1) as unknown[], true);
  let node: unknown = null;
  if (isMap(parent)) {
    // The key's line, not its value's: a mapping's value starts on the line of its first entry.
    node = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === String(last))?.key ?? null;
  } else if (isSeq(parent) && typeof last === 'number') {
    node = parent.items[last] ?? null;
  }
  return isNode(node) && node.range ? counter.linePos(node.range[0]).line : null;
}

/**
 * Where `path` is in the file: its own line; for a key not in the file, the line of the nearest enclosing
 * key that is there (a missing `backend.host` points at `backend:`), or null when only the document
 * encloses it (a missing `domains` has no line, rather than the first line of the file).
 */
function locate(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): { line: number | null; absent?: true } {
  for (let depth = path.length; depth >= 0; depth--) {
    if (depth === 0 && path.length > 0) break;
    const line = ownLine(doc, counter, path.slice(0, depth));
    if (line !== null) return depth === path.length ? { line } : { line, absent: true };
  }
  return { line: null, absent: true };
}

type CstToken = { type?: string; offset?: number; source?: string; end?: unknown };

/** Every token of the parser's concrete syntax tree, in document order. */
function* cstTokens(node: unknown): Generator<CstToken> {
  if (Array.isArray(node)) {
    for (const item of node) yield* cstTokens(item);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const token = node as CstToken & Record<string, unknown>;
  if (typeof token.type === 'string' && typeof token.offset === 'number') yield token;
  for (const key of ['start', 'key', 'sep', 'value', 'items', 'end']) yield* cstTokens(token[key]);
}

/**
 * Where a syntax error's problem starts. The parser reports an unclosed quote or bracket where it gave up
 * (the end of the quoted text, often lines later, or the line after an unclosed `[`): point at the quote or
 * bracket that opens it instead. Any other error: where the parser stopped, past the indent.
 */
function syntaxErrorStart(text: string, error: YAMLError): number {
  const stop = error.pos[0];
  const tokens = [...new Parser().parse(text)].flatMap((document) => [...cstTokens(document)]);
  const before = (token: CstToken) => (token.offset ?? Infinity) < stop;
  if (error.code === 'MISSING_CHAR' && /quote/.test(error.message)) {
    const quoted = tokens.filter(
      (token) => (token.type === 'double-quoted-scalar' || token.type === 'single-quoted-scalar') && before(token) && (token.offset ?? 0) + (token.source?.length ?? 0) >= stop,
    );
    const opening = quoted.at(-1)?.offset;
    if (opening !== undefined) return opening;
  }
  const flow = /^Flow (sequence|map)\b/.exec(error.message)?.[1];
  if (error.code === 'BAD_INDENT' && flow) {
    const kind = flow === 'sequence' ? ['flow-seq-start', 'flow-seq-end'] : ['flow-map-start', 'flow-map-end'];
    const opened = tokens.filter((token) => token.type === 'flow-collection' && before(token) && (token as { start?: CstToken }).start?.type === kind[0]);
    const closes = (token: CstToken) => Array.isArray(token.end) && token.end.some((end: CstToken) => end?.type === kind[1]);
    const opening = (opened.filter((token) => !closes(token)).at(-1) ?? opened.at(-1))?.offset;
    if (opening !== undefined) return opening;
  }
  let pos = stop;
  while (text[pos] === ' ' || text[pos] === '\t') pos++; // at the item, not at the indent before it
  return pos;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let current = data;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

type KeyTree = { properties?: Record<string, KeyTree>; items?: KeyTree };
let keyTree: KeyTree | undefined; // the schema as JSON Schema (as docs/CONFIG.md is made), built on first use

/** The keys the schema allows in the mapping at `path` (empty when there is no mapping there). */
function keysAt(path: readonly PropertyKey[]): string[] {
  keyTree ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as KeyTree;
  let node: KeyTree | undefined = keyTree;
  for (const part of path) node = typeof part === 'number' ? node?.items : node?.properties?.[String(part)];
  return Object.keys(node?.properties ?? {});
}

/** Edits (insert, delete, substitute, swap two neighbours) from a to b, ignoring case. */
function editDistance(a: string, b: string): number {
  const [s, t] = [a.toLowerCase(), b.toLowerCase()];
  const width = t.length + 1;
  const d: number[] = [];
  const at = (i: number, j: number) => d[i * width + j] ?? Infinity;
  for (let i = 0; i <= s.length; i++) {
    for (let j = 0; j <= t.length; j++) {
      if (i === 0 || j === 0) {
        d[i * width + j] = i + j;
        continue;
      }
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (s[i - 1] === t[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      d[i * width + j] = best;
    }
  }
  return at(s.length, t.length);
}

/** The valid key an unknown one is most likely a typo of: at most one edit away (two for longer keys). */
function nearestKey(unknown: string, valid: string[]): string | null {
  let best: string | null = null;
  let bestDistance = unknown.length >= 6 ? 3 : 2;
  for (const key of valid) {
    const distance = editDistance(unknown, key);
    if (distance < bestDistance) [best, bestDistance] = [key, distance];
  }
  return best;
}

/** A number or boolean written in quotes is a string in YAML: say so, since the value looks right. */
function quotedScalarHint(issue: z.core.$ZodIssue, value: unknown, node: unknown): string | null {
  if (issue.code !== 'invalid_type' || typeof value !== 'string') return null;
  const quoted = isScalar(node) && (node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE);
  const why = quoted ? `the quotes make ${JSON.stringify(value)} a string: write ${value} without them` : `${JSON.stringify(value)} is a string`;
  if (issue.expected === 'number' && value.trim() !== '' && Number.isFinite(Number(value))) return `expected a number; ${why}`;
  if (issue.expected === 'boolean' && /^(true|false)$/i.test(value)) return `expected true or false; ${why}`;
  return null;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `expected at least ${String(issue.minimum)} entries` : `expected at least ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'array' ? `expected at most ${String(issue.maximum)} entries` : `expected at most ${String(issue.maximum)}`;
    default:
      return issue.message.startsWith('expected') ? issue.message : `expected ${issue.message}`;
  }
}

export function loadConfigText(text: string): LoadResult {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const [syntax] = doc.errors;
  if (syntax) {
    // Only the first: the parser's later errors are mostly that one mistake seen again from the following
    // lines (one bad indent makes every sibling after it "not at the same column").
    const { line, col } = counter.linePos(syntaxErrorStart(text, syntax));
    return {
      ok: false,
      errors: [{ key: YAML_SYNTAX_KEY, value: undefined, message: syntax.message.split('\n')[0] ?? syntax.message, line, column: col }],
    };
  }
  const data: unknown = doc.toJS() ?? {};
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    const errors: ConfigError[] = [];
    // A misspelt key (`hostnme`) is reported once, with its suggestion, and the required key it was meant
    // to be is not also reported as missing.
    const meant = new Set<string>();
    for (const issue of parsed.error.issues) {
      if (issue.code !== 'unrecognized_keys') continue;
      const valid = keysAt(issue.path);
      for (const key of issue.keys) {
        const suggestion = nearestKey(key, valid);
        const where = issue.path.length ? ` in '${formatKey(issue.path)}'` : '';
        errors.push({
          key: formatKey([...issue.path, key]),
          // Never echoed: a misplaced secret (`api_key: ...` instead of api_key_file) must not reach the
          // terminal or the journal.
          value: HIDDEN,
          message: suggestion
            ? `unsupported key '${key}'${where}; did you mean '${suggestion}'? (every key: docs/CONFIG.md)`
            : `unsupported key '${key}'${where}; see docs/CONFIG.md for the keys`,
          line: locate(doc, counter, [...issue.path, key]).line,
        });
        if (suggestion) meant.add(formatKey([...issue.path, suggestion]));
      }
    }
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') continue;
      const value = valueAt(data, issue.path);
      if (value === undefined && meant.has(formatKey(issue.path))) continue;
      errors.push({
        key: formatKey(issue.path),
        value,
        message: quotedScalarHint(issue, value, doc.getIn(issue.path as unknown[], true)) ?? describeIssue(issue),
        ...locate(doc, counter, issue.path),
      });
    }
    errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    return { ok: false, errors };
  }
  const located = (issue: RuleIssue): ConfigError => ({
    key: formatKey(issue.path),
    value: issue.value,
    message: issue.message,
    ...locate(doc, counter, issue.path),
  });
  const ruleIssues = checkRules(parsed.data);
  if (ruleIssues.length > 0) return { ok: false, errors: ruleIssues.map(located) };
  return { ok: true, config: parsed.data, warnings: checkWarnings(parsed.data).map(located) };
}

/** Throws ConfigInvalidError listing every problem; for callers that cannot go on without a valid config. */
export function parseConfig(text: string, source: string): Config {
  const result = loadConfigText(text);
  if (!result.ok) throw new ConfigInvalidError(source, result.errors);
  return result.config;
}
