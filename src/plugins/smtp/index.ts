// mailproxy-smtp: corrections to Haraka's SMTP replies that no hook can make.
// Haraka answers a message over the size limit with 550 (at MAIL FROM ... SIZE= and after DATA); RFC 5321
// and RFC 1870 say 552, and senders treat 552 as "too big", not "unknown user". Core checks the size
// before any hook runs, so the reply itself is rewritten here.
import type { HarakaPlugin } from '../haraka-types';

type Respond = (this: unknown, code: number, msg: unknown, func?: () => void) => unknown;

const TOO_BIG = 'Message too big!';
let patched = false;

export function register(this: HarakaPlugin): void {
  if (patched) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const connection = require('haraka/connection') as { Connection?: { prototype: { respond: Respond } } };
  const proto = connection.Connection?.prototype;
  if (!proto) {
    this.logerror('cannot find Haraka Connection class: size replies stay 550');
    return;
  }
  const original = proto.respond;
  proto.respond = function respond(this: unknown, code: number, msg: unknown, func?: () => void) {
    if (code === 550 && msg === TOO_BIG) return original.call(this, 552, '5.3.4 Message size exceeds fixed maximum message size', func);
    return original.call(this, code, msg, func);
  };
  patched = true;
}
