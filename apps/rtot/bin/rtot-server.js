#!/usr/bin/env node
// The built server (`pnpm --filter @overthere/app-rtot build` writes dist/).
import '../dist/main.js';
