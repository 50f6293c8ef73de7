#!/usr/bin/env node
// Builds the libsecp256k1 addon (binding.gyp) against Debian's static libsecp256k1.a.
// Run by `npm ci` (the root package's install script) and by scripts/setup.sh with --if-stale.
// When the library is missing or the build fails it says so loudly and exits 0: the service
// then runs on the pure-JS fallback, which is correct but several times slower.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const output = path.join(root, 'build', 'Release', 'pegout_secp256k1.node');
const HEADER = 'secp256k1_schnorrsig.h';

function warn(lines) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n${lines.map((l) => `!! ${l}`).join('\n')}\n${bar}\n\n`);
}

function newestMtime(paths) {
  let newest = 0;
  for (const p of paths) {
    const st = statSync(p);
    newest = Math.max(newest, st.isDirectory() ? newestMtime(readdirSync(p).map((f) => path.join(p, f))) : st.mtimeMs);
  }
  return newest;
}

function findStaticLib() {
  if (process.env.PEGOUT_SECP256K1_LIB) return process.env.PEGOUT_SECP256K1_LIB;
  const dirs = [];
  const pc = spawnSync('pkg-config', ['--variable=libdir', 'libsecp256k1'], { encoding: 'utf8' });
  if (pc.status === 0 && pc.stdout.trim()) dirs.push(pc.stdout.trim());
  const multiarch = spawnSync('gcc', ['-print-multiarch'], { encoding: 'utf8' });
  if (multiarch.status === 0 && multiarch.stdout.trim()) dirs.push(`/usr/lib/${multiarch.stdout.trim()}`);
  dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/local/lib', '/usr/lib');
  return dirs.map((d) => path.join(d, 'libsecp256k1.a')).find((f) => existsSync(f));
}

function findHeaders() {
  return ['/usr/include', '/usr/local/include'].find((d) => existsSync(path.join(d, HEADER)));
}

/** node-gyp: ours from devDependencies, else the one npm bundles (npm sets npm_config_node_gyp). */
function findNodeGyp() {
  try {
    return createRequire(path.join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)
      ? process.env.npm_config_node_gyp
      : undefined;
  }
}

/** Node's own headers, so node-gyp never tries to download them (there may be no network). */
function findNodeDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    path.resolve(path.dirname(process.execPath), '..'),
    '/usr',
    '/usr/local',
  ];
  return candidates.find((d) => d && existsSync(path.join(d, 'include', 'node', 'node_api.h')));
}

if (process.argv.includes('--if-stale') && existsSync(output)) {
  const sources = newestMtime([path.join(root, 'native'), path.join(root, 'binding.gyp')]);
  if (statSync(output).mtimeMs >= sources) process.exit(0);
}

const lib = findStaticLib();
const headers = findHeaders();
const nodeGyp = findNodeGyp();
const nodeDir = findNodeDir();
const missing = [
  !lib && 'libsecp256k1.a (static library)',
  !headers && `${HEADER} (headers)`,
  !nodeGyp && 'node-gyp',
  !nodeDir && "Node's C headers (include/node/node_api.h)",
].filter(Boolean);
if (missing.length > 0) {
  warn([
    'The native libsecp256k1 addon was NOT built. Missing: ' + missing.join(', ') + '.',
    'Install the library with:  apt-get install libsecp256k1-dev g++ make python3',
    'then rerun:                node scripts/build-native.mjs',
    'Until then every signature is made and checked by the pure-JS fallback (slower).',
  ]);
  process.exit(0);
}

// Debian's archive references libc's `stderr` PC-relatively (fine in an executable, not in a
// shared object); a copy with that one reference renamed links cleanly (see native/).
// Outside build/: node-gyp rebuild wipes that folder.
const linkable = path.join(root, 'node_modules', '.cache', 'pegout-native', 'libsecp256k1-addon.a');
mkdirSync(path.dirname(linkable), { recursive: true });
const objcopy = spawnSync('objcopy', ['--redefine-sym', 'stderr=pegout_libsecp256k1_stderr', lib, linkable], {
  stdio: 'inherit',
});
if (objcopy.status !== 0) {
  warn([
    'Preparing libsecp256k1.a for linking failed (objcopy, from binutils).',
    'The pure-JS fallback will be used (slower).',
  ]);
  process.exit(0);
}

const args = [nodeGyp, 'rebuild', `--nodedir=${nodeDir}`, '--loglevel=warn'];
const build = spawnSync(process.execPath, args, {
  cwd: root,
  stdio: ['ignore', 'inherit', 'inherit'],
  env: { ...process.env, PEGOUT_SECP256K1_LIB: linkable },
});
if (build.status !== 0 || !existsSync(output)) {
  warn([
    `Building the native libsecp256k1 addon FAILED (node-gyp exit ${build.status}).`,
    'See the compiler output above. The pure-JS fallback will be used (slower).',
  ]);
  process.exit(0);
}
process.stdout.write(`native addon built: ${path.relative(root, output)} (libsecp256k1 from ${lib})\n`);
