// One writer for every file Haraka reads. haraka-config treats only whole lines as comments and reads
// any boolean spelling but true/yes/ok/enabled/on/1 as false, so comments always go on their own line
// and booleans are written as true/false.
//
// Each plugin renders its own files (src/plugins/<name>/settings.ts) from a typed interface of the file's
// values, and reads them back through haraka-config as IniAsRead of that same interface. This module
// imports nothing, so a plugin's settings module can use it in the Haraka process.

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

/** What haraka-config hands back for a file written from the interface T: a section or key may be missing
 * (an older or hand-edited file), and a value is whatever its text parses as, to be checked by the reader. */
export type IniAsRead<T> = { [S in keyof T]?: { [K in keyof T[S]]?: unknown } };

/** The second line of a header: whether Haraka picks up a change by itself. */
export const RESTART = 'Haraka reads this file at start: restart the instance after a change.';
export const WATCHED = 'Haraka reloads this file by itself when it changes.';

/** The comment a rendered file opens with (where it came from), ending with RESTART or WATCHED. */
export type FileHeader = (reload: string) => string;

/** A plugin's files (name in the instance's config directory -> text). */
export type RenderedPluginFiles = Record<string, string>;

/** A section written from typed values, in the order of their keys, each with its reason when `why` gives one. */
export function iniSection<T extends { [K in keyof T]: IniValue }>(name: string, values: T, why: { [K in keyof T]?: string } = {}): IniSection {
  return {
    name,
    entries: (Object.keys(values) as (keyof T & string)[]).map((key) => {
      const reason = why[key];
      return reason === undefined ? { key, value: values[key] } : { key, value: values[key], why: reason };
    }),
  };
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
      // An empty list is left out with its reason: the readers take a missing list as an empty one.
      if (Array.isArray(entry.value) && entry.value.length === 0) continue;
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
