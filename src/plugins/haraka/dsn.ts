// haraka-dsn 1.2.1, typed once: a reply with an RFC 3463 enhanced status code, which Haraka writes as
// `<code> <class>.<subject>.<detail> <text>` when a hook passes it to next() or respond().

/** A DSN object as haraka-dsn builds it; Haraka reads code and reply. */
export interface Dsn {
  code: number;
  reply: string | string[];
}

interface DsnModule {
  /** Text lines become a multi-line reply; subject and detail default to 0 (X.0.0). */
  create(code: number, msg: string | string[], subject?: number, detail?: number): Dsn;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const DSN = require('haraka-dsn') as DsnModule;
