// `mailproxy queue`: read and manage haraka-out's outbound queue directory while Haraka runs.
export * from './qfile';
export * from './tools';
export * from './format';
