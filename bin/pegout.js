#!/usr/bin/env node
// The CLI is compiled TypeScript; `npm run build` (run by the README's commands) produces it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('pegout: not built yet; run `bash scripts/setup.sh` (or `npm test` / `npm start`) first\n');
  process.exit(2);
}
await import(main.href);
