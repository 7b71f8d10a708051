// One UTC day of TLS sessions for the TLS reporting tests: two recipient domains, one held to DANE TLSA
// records, the other to an MTA-STS policy, with several failure rows between them.
import type { DayRecord } from '../../src/tlsrpt/types';

export const TLSA_STRING = '3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6';

export const SAMPLE_DAY: DayRecord = {
  day: '2024-03-05',
  policies: [
    {
      policy: { type: 'tlsa', domain: 'dane.example', strings: [TLSA_STRING], mxHost: ['mx1.dane.example'] },
      successes: 40,
      failures: 7,
      rows: [
        {
          resultType: 'tlsa-invalid',
          sendingMtaIp: '192.0.2.10',
          receivingMxHostname: 'mx1.dane.example',
          receivingIp: '198.51.100.21',
          reasonCode: 'TLSA_NO_MATCH',
          count: 5,
        },
        { resultType: 'starttls-not-supported', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'mx1.dane.example', receivingIp: '198.51.100.21', count: 2 },
      ],
    },
    {
      policy: {
        type: 'sts',
        domain: 'STS.example.',
        strings: ['version: STSv1', 'mode: enforce', 'mx: *.sts.example', 'max_age: 604800'],
        mxHost: ['*.sts.example'],
      },
      successes: 12,
      failures: 4,
      rows: [
        {
          resultType: 'certificate-expired',
          sendingMtaIp: '2001:db8::10',
          receivingMxHostname: 'mx.sts.example',
          receivingIp: '2001:db8:1::25',
          reasonCode: 'CERT_HAS_EXPIRED',
          count: 3,
        },
        { resultType: 'validation-failure', sendingMtaIp: '192.0.2.10', receivingMxHostname: 'backup.sts.example', count: 1 },
      ],
    },
  ],
};
