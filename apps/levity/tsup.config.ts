import { defineConfig } from 'tsup';
import base from '../../tsup.config.base.js';

// One file per bin; proto/levity.proto ships beside dist/ and is found at ../proto from either.
export default defineConfig({
  ...base,
  entry: { levityd: 'src/levityd-main.ts', levity: 'src/levity-main.ts' },
  dts: false,
});
