import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../../support/paths.js';
import { tempDir } from '../../support/tempdir.js';

// The end-to-end benchmark in its tiny configuration, to keep it working (CI does not run the
// full benchmark, and nothing here asserts speed).

describe('bench:e2e', { timeout: 300_000 }, () => {
  it('runs a tiny configuration and writes JSON, Markdown and SVG plots', async (t) => {
    const out = await tempDir(t, 'bench-e2e');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(repoRoot, 'dist/bench/e2e/run.js'), '--quick', '--json', '--out', out],
      { timeout: 240_000 },
    );
    const json = JSON.parse(stdout) as {
      results: {
        ok: boolean;
        payments: number;
        scenario: { requests: number };
        latenciesMs: number[];
        lowerBoundMs: number;
        stageClock: string;
        cpu: {
          stages: Record<string, number>;
          total: number;
          mainThread: number;
          process: number;
          rocksdb: number;
          helpers: number;
        }[];
      }[];
    };
    assert.equal(json.results.length, 1);
    const [r] = json.results;
    assert.ok(r!.ok, JSON.stringify(r));
    assert.ok(r!.payments >= 1);
    assert.equal(r!.latenciesMs.length, r!.payments);
    assert.ok(r!.lowerBoundMs > 0);
    const md = await readFile(join(out, 'e2e.md'), 'utf8');
    assert.match(md, /\| 2-of-3 native \| 6 \|/);
    // CPU by stage, from every member's own counters: each one ingested, verified and recorded the
    // payment; t of them (at least) validated and signed it — the third may hear of it finalized first
    assert.equal(r!.cpu.length, 3);
    for (const member of r!.cpu) {
      for (const stage of ['decide', 'store_write', 'verify', 'finalize_record'])
        assert.ok(member.stages[stage]! > 0, `${stage}: ${JSON.stringify(member)}`);
      assert.ok(member.total <= member.process, JSON.stringify(member));
      // the process's other threads, from /proc: whole ticks of 10 ms, so a tiny run's may be 0
      assert.ok(member.rocksdb >= 0 && Number.isFinite(member.helpers), JSON.stringify(member));
    }
    for (const stage of ['validation', 'sighash_sign']) {
      const signers = r!.cpu.filter((m) => m.stages[stage]! > 0).length;
      assert.ok(signers >= 2, `${stage} on ${signers} members: ${JSON.stringify(r!.cpu)}`);
    }
    assert.match(md, /\| main thread \| RocksDB threads \| V8 and libuv threads \| process \|/);
    assert.match(md, /\| 2-of-3 native \| mean of 3 \|/);
    assert.match(md, /\| 2-of-3 native \| busiest \(#\d\) \|/);
    for (const svg of ['e2e-latency.svg', 'e2e-throughput.svg', 'e2e-workers.svg'])
      assert.match(await readFile(join(out, svg), 'utf8'), /^<svg /);
  });

  it('the growth run pays a warm-up, then blocks one after another, and reports each', async (t) => {
    const out = await tempDir(t, 'bench-growth');
    await promisify(execFile)(
      process.execPath,
      [join(repoRoot, 'dist/bench/e2e/growth.js'), '--blocks', '2', '--per-block', '4', '--warmup', '50', '--out', out],
      { timeout: 240_000 },
    );
    const json = JSON.parse(await readFile(join(out, 'growth.json'), 'utf8')) as {
      results: { block: number; paidBefore: number; requestsPerSecond: number; cpuUs: number; rssMb: number }[];
    };
    assert.deepEqual(
      json.results.map((r) => [r.block, r.paidBefore]),
      [
        [0, 2],
        [1, 6],
      ],
    );
    for (const r of json.results) assert.ok(r.requestsPerSecond > 0 && r.cpuUs > 0 && r.rssMb > 0, JSON.stringify(r));
    const md = await readFile(join(out, 'growth.md'), 'utf8');
    assert.match(md, /First block against the last/);
    assert.match(md, /Warm-up: 2 requests final at once and paid before block 1/);
  });

  it('bench:member takes tiny rounds of taproot requests through every phase of one member and writes what each cost', async (t) => {
    const out = await tempDir(t, 'bench-member');
    await promisify(execFile)(
      process.execPath,
      [
        join(repoRoot, 'dist/bench/member/run.js'),
        ...['--requests', '40', '--members', '3', '--threshold', '2', '--rounds', '2', '--destination', 'p2tr'],
        ...['--out', out],
      ],
      { timeout: 120_000 },
    );
    const json = JSON.parse(await readFile(join(out, 'member.json'), 'utf8')) as {
      requests: number;
      destination: string;
      rounds: Record<string, { mainUs: number; processUs: number }>[];
    };
    assert.equal(json.requests, 40);
    assert.equal(json.destination, 'p2tr');
    assert.equal(json.rounds.length, 2);
    for (const round of json.rounds) {
      assert.deepEqual(Object.keys(round).sort(), ['build', 'finalize', 'ingest', 'sign', 'verify']);
      for (const phase of Object.values(round))
        assert.ok(phase.mainUs > 0 && phase.processUs > 0, JSON.stringify(round));
    }
  });

  it("bench:store takes tiny rounds through the store's part of a request's life, a last payment short, and writes what each cost", async (t) => {
    const out = await tempDir(t, 'bench-store');
    await promisify(execFile)(
      process.execPath,
      [
        join(repoRoot, 'dist/bench/store/run.js'),
        ...['--requests', '40', '--payment', '15', '--rounds', '2', '--out', out],
      ],
      { timeout: 120_000 },
    );
    const json = JSON.parse(await readFile(join(out, 'store.json'), 'utf8')) as {
      requests: number;
      perPayment: number;
      mainUs: number;
      rounds: Record<string, { mainUs: number; processUs: number }>[];
    };
    assert.equal(json.requests, 40);
    assert.equal(json.perPayment, 15);
    assert.equal(json.rounds.length, 2);
    for (const round of json.rounds) {
      assert.deepEqual(Object.keys(round).sort(), ['finalize', 'ingest', 'sign']);
      for (const phase of Object.values(round))
        assert.ok(phase.mainUs > 0 && phase.processUs > 0, JSON.stringify(round));
    }
    assert.ok(json.mainUs > 0);
  });
});
