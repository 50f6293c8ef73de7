/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(cost = 1): boolean {
    this.refill();
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }

  /**
   * Takes `cost` whatever is left, for work found only once it was done: the bucket may go into
   * debt, as far as a whole burst, and takes nothing until the rate has paid it back.
   */
  charge(cost: number): void {
    this.refill();
    this.tokens = Math.max(-this.burst, this.tokens - cost);
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }
}

/**
 * The bucket of `key` in `buckets`, made by `create` when absent. At most `cap` are kept: past that
 * the longest kept is forgotten, which only gives its key a whole budget again.
 */
export function bucketOf<T>(buckets: Map<string, T>, key: string, cap: number, create: () => T): T {
  let bucket = buckets.get(key);
  if (bucket === undefined) {
    if (buckets.size >= cap) buckets.delete(buckets.keys().next().value!);
    bucket = create();
    buckets.set(key, bucket);
  }
  return bucket;
}
