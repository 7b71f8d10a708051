export { freePort } from '../../src/testpeers/ports';
