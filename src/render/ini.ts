// One writer for every file Haraka reads. haraka-config treats only whole lines as comments and reads
// any boolean spelling but true/yes/ok/enabled/on/1 as false, so comments always go on their own line
// and booleans are written as true/false.

export type IniValue = string | number | boolean | readonly (string | number)[];

export interface IniEntry {
  key: string;
  value: IniValue;
  /** Why the value is what it is; written on the line above the key. */
  why?: string;
}

export interface IniSection {
  name: string | null;
  entries: IniEntry[];
}

function assertSafe(text: string, what: string): void {
  if (/[\r\n]/.test(text)) throw new Error(`ini ${what} must be one line: ${JSON.stringify(text)}`);
}

function formatScalar(value: string | number | boolean): string {
  const text = String(value);
  assertSafe(text, 'value');
  return text;
}

function commentLines(text: string): string[] {
  return text.split('\n').map((line) => `; ${line}`.trimEnd());
}

export function renderIni(header: string, sections: IniSection[]): string {
  const lines = commentLines(header);
  for (const section of sections) {
    lines.push('');
    if (section.name !== null) lines.push(`[${section.name}]`);
    for (const entry of section.entries) {
      assertSafe(entry.key, 'key');
      if (entry.why) lines.push(...commentLines(entry.why));
      if (Array.isArray(entry.value)) {
        for (const item of entry.value) lines.push(`${entry.key}[]=${formatScalar(item)}`);
      } else {
        lines.push(`${entry.key}=${formatScalar(entry.value as string | number | boolean)}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

/** A file of one value per line (config/plugins, host_list, relay_acl_allow, me): `#` comments on their own lines. */
export function renderList(header: string, items: readonly string[]): string {
  for (const item of items) assertSafe(item, 'list item');
  return `${header
    .split('\n')
    .map((line) => `# ${line}`.trimEnd())
    .join('\n')}\n${items.map((item) => `${item}\n`).join('')}`;
}
