/**
 * The longest DATA line both instances take as it is (connection.ini max.data_line_length, rendered).
 * Haraka folds a longer line with CRLF SP, which changes the message (and breaks its DKIM signature), so
 * mailproxy refuses such a message before 250 instead (raw-message.ts). RFC 5322 allows 998 octets, but
 * senders that ignore it exist, and Postfix as a relay hands their long lines on whole. Only a client with
 * a backend session reaches DATA, so at most limits.max_backend_sessions lines this long are buffered.
 */
export const DATA_LINE_LIMIT = 65536;
