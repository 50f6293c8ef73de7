import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { repoRoot } from '../../support/paths.js';
import { tempDir } from '../../support/tempdir.js';

// Keeps `npm run bench:signing` working; its figures are read by people, never asserted here.
it('the signing benchmark runs end to end in its tiny configuration', async (t) => {
  const dir = await tempDir(t, 'bench');
  const r = spawnSync(
    process.execPath,
    [path.join(repoRoot, 'dist', 'bench', 'signing', 'run.js'), '--quick', '--out', dir],
    {
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| sighash \| ours, 10 inputs/);
  const json = JSON.parse(readFileSync(path.join(dir, 'signing.json'), 'utf8'));
  assert.equal(json.quick, true);
  assert.ok(json.rows.some((row: { group: string }) => row.group === 'pool'));
});

it('the signing benchmark answers --help without running, and names an unknown option', () => {
  const run = path.join(repoRoot, 'dist', 'bench', 'signing', 'run.js');
  const help = spawnSync(process.execPath, [run, '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /--out DIR/);
  assert.doesNotMatch(help.stdout, /\| sign \|/);
  const bad = spawnSync(process.execPath, [run, '--fast'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /bench:signing: .*--fast/);
});
