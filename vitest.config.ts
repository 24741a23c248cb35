import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests run against sources, so a change is tested without a build.
const source = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const alias = {
  '@overthere/core': source('./packages/core/src/index.ts'),
  '@overthere/conformance': source('./packages/conformance/src/index.ts'),
  '@overthere/runtime-local': source('./packages/runtime-local/src/index.ts'),
  '@overthere/transport-http': source('./packages/transport-http/src/index.ts'),
};

export default defineConfig({
  resolve: { alias },
  test: {
    projects: [
      {
        resolve: { alias },
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        resolve: { alias },
        test: {
          name: 'integration',
          include: ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
