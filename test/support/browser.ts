import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { repoRoot } from './paths.js';

// Real headless Chromium for the status pages' tests: Debian's package, driven by playwright-core,
// which never downloads a browser. Every run gets a fresh profile and talks to nothing but loopback.

export const CHROMIUM = '/usr/bin/chromium';
export const NO_CHROMIUM = `${CHROMIUM} not found: install Debian's chromium (scripts/setup.sh does, as root) to run the browser tests`;
export const HAVE_CHROMIUM = existsSync(CHROMIUM);

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

type Owner = { after(fn: () => Promise<void>): void };

/** A browser with a fresh --user-data-dir; closed, then its profile removed, when `owner` ends. */
export async function openBrowser(owner: Owner): Promise<BrowserContext> {
  const profile = await mkdtemp(path.join(tmpdir(), 'pegout-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1200, height: 900 },
  });
  owner.after(async () => {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  });
  return context;
}

/**
 * Where a screenshot goes: docs/img/ (committed, shown in the README) when
 * PEGOUT_UPDATE_SCREENSHOTS=1, else the test's temp dir, so a test run leaves the work tree as it was.
 */
export function screenshotPath(dir: string, name: string): string {
  return process.env.PEGOUT_UPDATE_SCREENSHOTS ? path.join(repoRoot, 'docs', 'img', name) : path.join(dir, name);
}
