import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/main.ts'],
  format: ['esm'],
  // An app, not a library: no declarations.
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
