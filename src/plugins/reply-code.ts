/**
 * Transaction note through which mailproxy-forward asks mailproxy-smtp to send the backend's exact reply
 * code: Haraka itself answers every refused message with 450 or 550.
 */
export const REPLY_CODE_NOTE = 'mailproxy_reply_code';
