// haraka-constants 1.0.8 (Haraka 3.3.4's own copy), typed once: the return codes a hook passes to next()
// and the connection states of connection.js.

export interface HarakaConstants {
  readonly CONT: number;
  readonly STOP: number;
  readonly DENY: number;
  readonly DENYSOFT: number;
  readonly DENYDISCONNECT: number;
  readonly DISCONNECT: number;
  readonly OK: number;
  readonly NEXT_HOOK: number;
  readonly DELAY: number;
  readonly DENYSOFTDISCONNECT: number;
  readonly connection: {
    readonly state: {
      readonly CMD: number;
      readonly LOOP: number;
      readonly DATA: number;
      readonly PAUSE: number;
      readonly PAUSE_SMTP: number;
      readonly PAUSE_DATA: number;
      readonly DISCONNECTING: number;
      readonly DISCONNECTED: number;
    };
  };
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const constants = require('haraka-constants') as HarakaConstants;
