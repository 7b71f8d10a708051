// docs/CONFIG.md, generated from the schema so the reference can never disagree with the code.
import { z } from 'zod';
import { configSchema } from './schema';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  minItems?: number;
}

function typeOf(schema: JsonSchema): string {
  if (schema.const !== undefined) return `\`${JSON.stringify(schema.const)}\``;
  if (schema.enum) return schema.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  if (schema.type === 'array') return `list of ${schema.items ? typeOf(schema.items) : 'values'}`;
  const bounds = [schema.minimum !== undefined ? `≥ ${schema.minimum}` : '', schema.maximum !== undefined ? `≤ ${schema.maximum}` : ''].filter(Boolean).join(', ');
  return `${String(schema.type ?? 'value')}${bounds ? ` (${bounds})` : ''}`;
}

function rows(schema: JsonSchema, prefix: string, out: string[]): void {
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (child.type === 'object' && child.properties) {
      rows(child, name, out);
      continue;
    }
    const required = schema.required?.includes(key) && child.default === undefined;
    const fallback = child.default === undefined ? (required ? '**required**' : '(unset)') : `\`${JSON.stringify(child.default)}\``;
    out.push(`| \`${name}\` | ${typeOf(child)} | ${fallback} | ${(child.description ?? '').replace(/\|/g, '\\|')} |`);
  }
}

export function configDocs(): string {
  const json = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = [
    '# mailproxy config reference',
    '',
    'Generated from `src/config/schema.ts` by `mailproxy config docs`; a test keeps the two equal.',
    'Unknown keys are errors. Durations are in seconds, sizes in bytes.',
    '',
    '| key | type | default | meaning |',
    '|---|---|---|---|',
  ];
  rows(json, '', out);
  return `${out.join('\n')}\n`;
}
