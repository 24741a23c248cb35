import { defineConfig } from 'tsup';

export default defineConfig({
  // One file per bin; proto/levity.proto ships beside dist/ and is found at ../proto from either.
  entry: { levityd: 'src/levityd-main.ts', levity: 'src/levity-main.ts' },
  format: ['esm'],
  // An app, not a library: no declarations.
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
