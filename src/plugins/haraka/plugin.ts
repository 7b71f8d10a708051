// The slice of Haraka 3.3.4's plugin API our plugins use (plugins.js). Haraka copies a package plugin's
// exports onto its plugin object, so hook functions run with `this` bound to that object.

export interface HarakaConfig {
  get(name: string, type?: string | object, callback?: () => void): unknown;
  get(name: string, options: object, callback?: () => void): unknown;
}

export interface HarakaPlugin {
  name: string;
  config: HarakaConfig;
  register_hook(hook: string, method: string, priority?: number): void;
  loginfo(...args: unknown[]): void;
  lognotice(...args: unknown[]): void;
  logwarn(...args: unknown[]): void;
  logerror(...args: unknown[]): void;
  logdebug(...args: unknown[]): void;
  [key: string]: unknown;
}

/** A hook's callback: a return code of constants.ts (none: carry on) and a message or DSN (dsn.ts). */
export type Next = (code?: number, message?: unknown) => void;
