// The package ships no types; this declares the part of its abstract-level API the store uses
// (keyEncoding 'utf8', valueEncoding 'buffer' fixed at construction).
declare module '@nxtedition/rocksdb' {
  interface RocksIteratorOptions {
    gte?: string;
    lt?: string;
    reverse?: boolean;
    limit?: number;
  }
  interface RocksChainedBatch {
    put(key: string, value: Buffer): this;
    del(key: string): this;
    readonly length: number;
    write(options?: { sync?: boolean }): Promise<void>;
    close(): Promise<void>;
  }
  export class RocksLevel {
    constructor(
      location: string,
      options: {
        keyEncoding: 'utf8';
        valueEncoding: 'buffer';
        compaction?: 'level' | 'universal';
        memtableMemoryBudget?: number;
        cacheSize?: number;
        cacheIndexAndFilterBlocks?: boolean;
      },
    );
    readonly status: 'opening' | 'open' | 'closing' | 'closed';
    open(options?: { createIfMissing?: boolean; errorIfExists?: boolean }): Promise<void>;
    close(): Promise<void>;
    getMany(keys: string[]): Promise<(Buffer | undefined)[]>;
    batch(): RocksChainedBatch;
    /** A RocksDB property (rocksdb.*), as the string RocksDB reports. */
    getProperty(property: string): string;
    iterator(options: RocksIteratorOptions): AsyncIterableIterator<[string, Buffer]> & { close(): Promise<void> };
  }
}
