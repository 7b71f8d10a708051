import { describe, expect, it } from 'vitest';
import { decodedSubject } from '../../src/demo/run';

describe('the demo stand-ins show subjects as written', () => {
  it('decodes RFC 2047 encoded words, and keeps anything else as it came', () => {
    expect(decodedSubject('=?UTF-8?B?SGVsbG8gd8O2cmxk?=')).toBe('Hello wörld');
    expect(decodedSubject('=?ISO-8859-1?Q?caf=E9?= au lait')).toBe('café au lait');
    expect(decodedSubject('plain subject')).toBe('plain subject');
  });
});
