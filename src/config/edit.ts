// Pure: read one key of a loaded config, and change one key in a config file's text while keeping its
// comments and layout (postconf's `-h` and `-e` for mailproxy.yaml). The installer uses both for
// system.node; a person can use them for any key.
import { isScalar, parse, parseDocument, stringify } from 'yaml';
import { loadConfigText, formatConfigError, type ConfigError } from './load';
import type { Config } from './schema';

/** `system.node` → ['system', 'node']; null for a path that is not dotted key names. */
export function parseKeyPath(key: string): string[] | null {
  return /^[a-z_0-9]+(\.[a-z_0-9]+)*$/.test(key) ? key.split('.') : null;
}

/** The value at `path` in a loaded config (defaults included), or undefined when there is no such key. */
export function configValue(config: Config, path: string[]): unknown {
  let node: unknown = config;
  for (const part of path) {
    if (node === null || typeof node !== 'object' || Array.isArray(node) || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** How `config get` prints a value: scalars as they are, lists and sections as JSON. */
export function formatValue(value: unknown): string {
  return value !== null && typeof value === 'object' ? JSON.stringify(value) : String(value);
}

export type EditResult = { ok: true; text: string } | { ok: false; errors: string[] };

/**
 * Sets `path` to `value` (read as a YAML scalar: `true`, `25`, a path) in the file's text, and checks the
 * whole result with the schema: a change that would make the file invalid is refused with the errors.
 */
export function setConfigValue(text: string, path: string[], value: string, source: string): EditResult {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return { ok: false, errors: doc.errors.map((error) => `${source}: ${error.message}`) };
  const parsed = parse(value) as unknown;
  const node = doc.getIn(path, true);
  // An existing scalar is replaced in place, so that every other byte of the file stays as the user wrote it.
  const edited =
    isScalar(node) && node.range
      ? `${text.slice(0, node.range[0])}${stringify(parsed).trimEnd()}${text.slice(node.range[1])}`
      : (doc.setIn(path, parsed), doc.toString({ flowCollectionPadding: false }));
  const loaded = loadConfigText(edited);
  if (!loaded.ok) return { ok: false, errors: loaded.errors.map((error: ConfigError) => formatConfigError(source, error)) };
  return { ok: true, text: edited };
}
