import type { Store } from '../../src/storage/store.js';

/** Store reads made through a counted view: calls (get, getMany, keys, entries) and rows (keys or values). */
export interface ReadCount {
  calls: number;
  rows: number;
}

/**
 * The store, with every read counted: a test of what a path costs as history grows counts what it
 * reads (never times it), so the bound holds on any machine.
 */
export function counted(store: Store): { store: Store; reads: ReadCount } {
  const reads: ReadCount = { calls: 0, rows: 0 };
  const wrapped = new Proxy(store, {
    get(target, name) {
      const value = Reflect.get(target, name, target) as unknown;
      if (typeof value !== 'function') return value;
      if (name === 'get' || name === 'getMany' || name === 'keys') {
        return async (...args: unknown[]) => {
          reads.calls++;
          const out = (await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)) as unknown;
          reads.rows += Array.isArray(out) ? out.length : 1;
          return out;
        };
      }
      if (name === 'entries') {
        return async function* (...args: unknown[]) {
          reads.calls++;
          for await (const row of (value as (...a: unknown[]) => AsyncIterable<unknown>).apply(target, args)) {
            reads.rows++;
            yield row;
          }
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { store: wrapped, reads };
}
