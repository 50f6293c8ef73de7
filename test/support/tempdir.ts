import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Store } from '../../src/storage/store.js';

type Owner = { after(fn: () => Promise<void>): void };

/** A fresh directory under the OS temp dir, removed when the test (or suite) `owner` ends. */
export async function tempDir(owner: Owner, label: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `pegout-${label}-`));
  // PEGOUT_KEEP_TEST_DIRS=1 keeps stores and logs for a post-mortem
  if (!process.env.PEGOUT_KEEP_TEST_DIRS) owner.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export const TEST_DESCRIPTOR =
  'tr(50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0,sortedmulti_a(1,aa))#testonly';

/**
 * A real store in a fresh temp dir; closed, then deleted, when `owner` ends (one hook, so the
 * order is fixed: RocksDB must not lose its files while open).
 */
export async function openTempStore(owner: Owner, descriptor = TEST_DESCRIPTOR): Promise<Store> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-store-'));
  const store = await Store.open(dir, { descriptor });
  owner.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}
