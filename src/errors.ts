/**
 * Every failure the service reports carries a domain and a stable code, so operators, logs,
 * metrics and tests can match on the code while the message stays free to improve.
 * Each domain declares its own subclass with a closed union of codes.
 */
export abstract class PegoutError<Code extends string = string> extends Error {
  abstract readonly domain: string;
  readonly code: Code;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: Code, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = details;
  }

  /** What logs and APIs show: never includes secrets, because details never hold them. */
  toJSON(): Record<string, unknown> {
    return {
      error: this.name,
      domain: this.domain,
      code: this.code,
      message: this.message,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

export function isPegoutError(err: unknown): err is PegoutError {
  return err instanceof PegoutError;
}
