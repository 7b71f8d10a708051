// The command lines a test SMTP server reads from its raw socket.

/**
 * Takes the complete CRLF-ended lines off the front of `buffer`, hands each to `onLine` (until it returns
 * false: the server stopped reading), and returns what is left for the next chunk.
 */
export function takeLines(buffer: string, onLine: (line: string) => boolean | undefined): string {
  let rest = buffer;
  for (let end = rest.indexOf('\r\n'); end !== -1; end = rest.indexOf('\r\n')) {
    const line = rest.slice(0, end);
    rest = rest.slice(end + 2);
    if (onLine(line) === false) break;
  }
  return rest;
}
