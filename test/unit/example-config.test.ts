// mailproxy.example.yaml is the file a user starts from: it must name (and so comment) every key of the
// schema, and load without errors.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadConfigText } from '../../src/config/load';
import { configSchema } from '../../src/config/schema';

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
}

function leafKeys(schema: JsonSchema, prefix = ''): string[] {
  return Object.entries(schema.properties ?? {}).flatMap(([key, child]) => {
    const name = prefix ? `${prefix}.${key}` : key;
    return child.type === 'object' && child.properties ? leafKeys(child, name) : [name];
  });
}

const text = readFileSync(path.resolve(__dirname, '../../mailproxy.example.yaml'), 'utf8');

describe('mailproxy.example.yaml', () => {
  it('names every key of the schema, each with a comment above it or its group', () => {
    // Optional keys without a default may stand commented out (`# public_ipv6: ...`).
    const uncommented = parse(text.replace(/^(\s*)# (public_ipv6:)/m, '$1$2')) as Record<string, unknown>;
    const has = (key: string) =>
      key.split('.').reduce<unknown>((node, part) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined), uncommented) !== undefined;
    const keys = leafKeys(z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema);
    expect(keys.length).toBeGreaterThan(40);
    expect(keys.filter((key) => !has(key))).toEqual([]);
    const lines = text.split('\n');
    for (const [i, line] of lines.entries()) {
      // Leaf keys only (a key with a value on its line, or a list below it).
      if (!/^\s*[a-z_0-9]+:\s*\S/.test(line) && !/^\s+- /.test(lines[i + 1] ?? '')) continue;
      if (!/^\s*[a-z_0-9]+:/.test(line)) continue;
      const indent = /^\s*/.exec(line)![0].length;
      let j = i - 1;
      // The comment may stand above a run of sibling keys.
      while (j >= 0 && /^\s*[a-z_0-9]+:/.test(lines[j]!) && /^\s*/.exec(lines[j]!)![0].length === indent) j -= 1;
      expect(lines[j] ?? '', `comment above "${line.trim()}"`).toMatch(/^\s*#|^\s*[a-z_]+:\s*$|^\s*- /);
    }
  });

  it('loads without errors', () => {
    const loaded = loadConfigText(text);
    expect(loaded.ok ? [] : loaded.errors).toEqual([]);
  });
});
