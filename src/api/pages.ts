import { readdir, readFile } from 'node:fs/promises';
import { extname } from 'node:path';

// The status pages: static files in ./pages (copied next to this module by `npm run build`),
// read once at start and served from memory. No framework and no CDN: a member's pages work
// with no connection to anything but the member.

export interface PageFile {
  readonly type: string;
  readonly body: Buffer;
}

/** Served files by URL path. */
export type Pages = ReadonlyMap<string, PageFile>;

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The two pages; every other file is served under /pages/. */
const ROUTES: Readonly<Record<string, string>> = { 'user.html': '/', 'operator.html': '/operator' };

/**
 * The pages render untrusted text (addresses, reasons) as text only; this policy is the second
 * wall: no script but the member's own files runs, and the pages talk to nothing but the member.
 */
export const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
} as const;

export async function loadPages(dir = new URL('./pages/', import.meta.url)): Promise<Pages> {
  const pages = new Map<string, PageFile>();
  for (const name of await readdir(dir)) {
    const type = TYPES[extname(name)];
    if (!type) continue;
    pages.set(ROUTES[name] ?? `/pages/${name}`, { type, body: await readFile(new URL(name, dir)) });
  }
  return pages;
}
