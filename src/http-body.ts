import type { IncomingMessage } from 'node:http';

/**
 * Reads an HTTP answer's body whole, up to `max` bytes: past that `onTooLarge` runs once and the rest
 * is dropped, so a node's answer, however large, never outgrows the process's memory or what one
 * string holds (about 512 MiB; a toString past it throws out of the response handler, a crash).
 */
export function readBody(
  res: IncomingMessage,
  max: number,
  onBody: (body: Buffer) => void,
  onTooLarge: () => void,
): void {
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    if (size > max) return;
    size += chunk.length;
    if (size <= max) chunks.push(chunk);
    else {
      chunks.length = 0;
      onTooLarge();
    }
  });
  res.on('end', () => {
    if (size <= max) onBody(Buffer.concat(chunks));
  });
}
