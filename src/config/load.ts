// Parses and validates config text. Pure: the caller reads the file. Every error names the key, the value,
// what was expected and the line, so `mailproxy check` can be read without opening the schema.
import { isMap, isNode, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema';
import { checkRules } from './rules';

export interface ConfigError {
  key: string;
  value: unknown;
  message: string;
  line: number | null;
}

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: ConfigError[] };

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

export function formatConfigError(source: string, error: ConfigError): string {
  const where = error.line === null ? source : `${source}:${error.line}`;
  const value = error.value === undefined ? 'missing' : JSON.stringify(error.value);
  return `${where}: ${error.key}: ${value}: ${error.message}`;
}

function lineOf(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): number | null {
  // Walk down as far as the path exists, so a missing key points at its parent mapping.
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth) as unknown[], true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return null;
}

function lineOfKey(doc: Document, counter: LineCounter, path: readonly PropertyKey[], key: string): number | null {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
  if (isMap(parent)) {
    const pair = parent.items.find((item) => isNode(item.key) && String((item.key as { value?: unknown }).value) === key);
    if (pair && isNode(pair.key) && pair.key.range) return counter.linePos(pair.key.range[0]).line;
  }
  return lineOf(doc, counter, path);
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let current = data;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
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
  if (doc.errors.length > 0) {
    return {
      ok: false,
      errors: doc.errors.map((error) => ({
        key: '(yaml)',
        value: undefined,
        message: error.message.split('\n')[0] ?? error.message,
        line: counter.linePos(error.pos[0]).line,
      })),
    };
  }
  const data: unknown = doc.toJS() ?? {};
  const parsed = configSchema.safeParse(data);
  if (!parsed.success) {
    const errors: ConfigError[] = [];
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          errors.push({
            key: formatKey([...issue.path, key]),
            value: valueAt(data, [...issue.path, key]),
            message: `unsupported key '${key}'${issue.path.length ? ` in '${formatKey(issue.path)}'` : ''}; see docs/CONFIG.md for the keys`,
            line: lineOfKey(doc, counter, issue.path, key),
          });
        }
        continue;
      }
      errors.push({
        key: formatKey(issue.path),
        value: valueAt(data, issue.path),
        message: describeIssue(issue),
        line: lineOf(doc, counter, issue.path),
      });
    }
    return { ok: false, errors };
  }
  const ruleIssues = checkRules(parsed.data);
  if (ruleIssues.length > 0) {
    return {
      ok: false,
      errors: ruleIssues.map((issue) => ({
        key: formatKey(issue.path),
        value: issue.value,
        message: issue.message,
        line: lineOf(doc, counter, issue.path),
      })),
    };
  }
  return { ok: true, config: parsed.data };
}

/** Throws ConfigInvalidError listing every problem; for callers that cannot go on without a valid config. */
export function parseConfig(text: string, source: string): Config {
  const result = loadConfigText(text);
  if (!result.ok) throw new ConfigInvalidError(source, result.errors);
  return result.config;
}
