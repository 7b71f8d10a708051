// The demo's backend stand-in answers recipients as a real backend does (Mailcow's Postfix with
// smtpd_reject_unlisted_recipient = yes, allow_percent_hack = no, swap_bangpath = no): its mailboxes at our
// domains are accepted, any other local part (a percent hack, a bang path, a quoted address) is an unknown
// user, and a foreign domain is relaying, refused. `mailproxy selftest`'s open-relay probe then passes on
// the demo for the reason it passes on a VPS. Pure.

/** The mailboxes the backend stand-in has at each of the config's domains. */
export const DEMO_MAILBOXES = ['alice', 'bob', 'postmaster'] as const;

const lower = (text: string) => text.toLowerCase().replace(/\.$/, '');

/** The local part as Postfix compares it: surrounding quotes removed, lower case. */
function localPart(text: string): string {
  const unquoted = /^"(.*)"$/s.exec(text);
  return (unquoted ? (unquoted[1] ?? '').replace(/\\(.)/g, '$1') : text).toLowerCase();
}

/** The refusal for a recipient (an SMTP reply text), or null when it is one of the mailboxes. */
export function backendRecipientRefusal(address: string, domains: readonly string[], mailboxes: readonly string[] = DEMO_MAILBOXES): string | null {
  const at = address.lastIndexOf('@');
  const domain = at === -1 ? '' : lower(address.slice(at + 1));
  if (!domains.some((ours) => lower(ours) === domain)) return `554 5.7.1 <${address}>: Relay access denied`;
  if (mailboxes.includes(localPart(address.slice(0, at)))) return null;
  return `550 5.1.1 <${address}>: Recipient address rejected: User unknown in virtual mailbox table`;
}
