import { defineConfig } from 'tsup';
import base from '../../tsup.config.base.js';

// An app, not a library: one entry, no declarations.
export default defineConfig({ ...base, entry: ['src/main.ts'], dts: false });
