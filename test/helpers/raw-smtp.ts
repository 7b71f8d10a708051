export { RawSmtp, type RawReply } from '../../src/smtp/raw';
