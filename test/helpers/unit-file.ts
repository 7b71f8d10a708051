// A rendered systemd unit read the simple way the render tests need: key -> every value it has (a key may
// repeat, as SystemCallFilter= does), whatever its section.
export function unitEntries(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) map.set(match[1]!, [...(map.get(match[1]!) ?? []), match[2]!]);
  }
  return map;
}
