import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import type { Devnet } from '../../../src/devnet/federation.js';
import { sendPegoutTo } from '../../../src/devnet/requests.js';
import { EvmRpc } from '../../../src/evm/rpc.js';
import { HAVE_CHROMIUM, NO_CHROMIUM, openBrowser, screenshotPath } from '../../support/browser.js';
import { federationOfProcesses, PEGOUT_SATS, send, waitSigned } from '../../support/federation.js';
import { tempDir } from '../../support/tempdir.js';

// The status pages in real headless Chromium, on a devnet of three member processes without
// Bitcoin Core: requests end 'signed' (in a finalized payment), which is as far as such a
// federation takes them.

const BAD_CHECKSUM = 'bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh';
const HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
/**
 * Shown as it is, a right-to-left override before an address written backwards reads as that address
 * (bc1qar0srrr7…5mdq) and turns the rest of its line around, the member's own words included.
 */
const SPOOF = `\u202e${[...'bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq'].reverse().join('')}\u200b`;
/** Characters that move or hide text: direction controls, zero-width ones, C0 and C1 controls. */
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/u;

/** Waits until `member` has ingested the requests of EVM transaction `txHash`. */
async function ingested(apiUrl: string, txHash: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    const res = await fetch(`${apiUrl}/pegouts?evmTx=${txHash}`);
    if (res.ok && ((await res.json()) as { pegouts: unknown[] }).pegouts.length > 0) return;
    await sleep(250);
  }
  assert.fail(`${apiUrl} never ingested ${txHash}`);
}

async function lookUp(page: Page, text: string): Promise<void> {
  await page.fill('#q', text);
  await page.click('button[type=submit]');
}

describe('status pages in headless Chromium', { skip: HAVE_CHROMIUM ? false : NO_CHROMIUM }, () => {
  let devnet: Devnet;
  let browser: BrowserContext;
  let dir: string;
  let sent: string[];
  let paid: { id: string; txHash: string };
  let rejectedTx: string;
  let hostileTx: string;
  let spoofTx: string;

  // what before() starts is stopped once every test ran, last started first
  const cleanup: (() => Promise<void>)[] = [];
  const owner = { after: (fn: () => Promise<void>) => void cleanup.unshift(fn) };
  after(async () => {
    for (const fn of cleanup) await fn();
  });

  before(async () => {
    dir = await tempDir(owner, 'pages');
    devnet = await federationOfProcesses(owner, { members: 3, threshold: 2 });
    const rpc = new EvmRpc(devnet.anvil.url);
    sent = (await send(devnet, 3)).ids;
    paid = { id: sent[0]!, txHash: sent[0]!.split(':')[0]! };
    const utf8 = (text: string) => new TextEncoder().encode(text);
    rejectedTx = await sendPegoutTo(rpc, utf8(BAD_CHECKSUM), PEGOUT_SATS);
    hostileTx = await sendPegoutTo(rpc, utf8(HOSTILE), PEGOUT_SATS);
    spoofTx = await sendPegoutTo(rpc, utf8(SPOOF), PEGOUT_SATS);
    await waitSigned(devnet, 3, [0, 1, 2]);
    for (const tx of [rejectedTx, hostileTx, spoofTx]) await ingested(devnet.members[1]!.apiUrl, tx);
    browser = await openBrowser(owner);
  });

  it('a request looked up by its EVM transaction hash shows its timeline up to its final state', async () => {
    const page = await browser.newPage();
    await page.goto(`${devnet.members[1]!.apiUrl}/`);
    await lookUp(page, paid.txHash);
    const card = page.locator(`article.pegout[data-id="${paid.id}"]`);
    await card.locator('li[data-step="signatures"].done').waitFor({ timeout: 30_000 });
    assert.equal(await card.locator('.badge').textContent(), 'signed');
    assert.match((await card.locator('li[data-step="signatures"]').textContent())!, /signatures 2\/2/);
    assert.match(
      (await card.locator('li[data-step="broadcast"]').textContent())!,
      /not broadcast: this member has no Bitcoin Core/,
    );
    for (const step of ['requested', 'final', 'batched'])
      assert.equal(await card.locator(`li[data-step="${step}"].done`).count(), 1, `${step} is done`);
    const api = (await (await fetch(`${devnet.members[1]!.apiUrl}/pegouts/${paid.id}`)).json()) as {
      payments: { txid: string; finalized: boolean }[];
    };
    const txid = api.payments.find((p) => p.finalized)!.txid;
    assert.match((await card.locator('.payments').textContent())!, new RegExp(txid));
    await page.screenshot({ path: screenshotPath(dir, 'user-page.png'), fullPage: true });
    assert.deepEqual([...(await readFile(screenshotPath(dir, 'user-page.png'))).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  });

  it('a rejected request shows its reason in plain words', async () => {
    const page = await browser.newPage();
    await page.goto(`${devnet.members[0]!.apiUrl}/#q=${rejectedTx}`);
    const card = page.locator('article.pegout.rejected');
    await card.waitFor({ timeout: 30_000 });
    assert.equal(
      await card.locator('.says').textContent(),
      'the address has a bad checksum or is not a Bitcoin address: these coins were burned and cannot be paid',
    );
    assert.equal(await card.locator('li[data-step="final"].failed').count(), 1);
    assert.equal(await card.locator('li[data-step="batched"]').count(), 0, 'no payment steps for a rejected request');
  });

  it('an address that is markup is shown as text, looked up by EVM transaction or by that address', async () => {
    const page = await browser.newPage();
    // evaluated in the page (this file is compiled without the DOM's types)
    const scripts = async () => page.evaluate<number>("document.querySelectorAll('script').length");
    await page.goto(`${devnet.members[2]!.apiUrl}/`);
    const before = await scripts();
    for (const query of [hostileTx, HOSTILE]) {
      await lookUp(page, query);
      const card = page.locator('article.pegout.rejected');
      await card.locator('h2 code').waitFor({ timeout: 30_000 });
      assert.equal(await card.locator('h2 code').textContent(), HOSTILE);
      assert.equal(await page.evaluate<unknown>('window.__pwned'), undefined);
      assert.equal(await scripts(), before, 'no script element was added');
      assert.equal(await page.locator('article img').count(), 0, 'no img element was added');
    }
  });

  it('characters that move or hide text are shown as their code points, wherever text from a stranger goes', async () => {
    const page = await browser.newPage();
    await page.goto(`${devnet.members[1]!.apiUrl}/#q=${spoofTx}`);
    const card = page.locator('article.pegout.rejected');
    await card.locator('h2 code').waitFor({ timeout: 30_000 });
    const reversed = SPOOF.slice(1, -1);
    assert.equal(await card.locator('h2 code').textContent(), `[U+202E]${reversed}[U+200B]`);
    // the address is quoted in the rejection's detail and in the history too
    const shown = (await card.textContent())!;
    assert.ok(shown.includes(`[U+202E]${reversed}`), shown);
    assert.doesNotMatch(shown, INVISIBLE);
  });

  it('the operator page shows every member connected and the payments', async () => {
    const page = await browser.newPage();
    await page.goto(`${devnet.members[0]!.apiUrl}/operator`);
    // (locators, not waitForFunction: the page's policy forbids the eval that polling a string predicate needs)
    await page.locator('#members .link.connected').nth(1).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#members .link.connected').count(), 2);
    assert.equal(await page.locator('#members .link.self').count(), 1);
    const rows = page.locator('#payments tbody tr');
    await rows.first().waitFor({ timeout: 30_000 });
    const listed = (await rows.allTextContents()).join('\n');
    const api = (await (await fetch(`${devnet.members[0]!.apiUrl}/overview`)).json()) as {
      recentPayments: { txid: string }[];
    };
    // the payments of the three valid requests (rival payments of the same requests may be among them)
    const payments = new Set<string>();
    for (const id of sent) {
      const status = (await (await fetch(`${devnet.members[0]!.apiUrl}/pegouts/${id}`)).json()) as {
        payments: { txid: string; finalized: boolean }[];
      };
      for (const p of status.payments) if (p.finalized) payments.add(p.txid);
    }
    assert.deepEqual(new Set(api.recentPayments.map((p) => p.txid)), payments);
    for (const txid of payments) assert.ok(listed.includes(txid), `payment ${txid} is listed`);
    assert.match((await page.locator('#federation').textContent())!, new RegExp(devnet.federation.address));
    assert.match((await page.locator('#requests').textContent())!, /signed3/);
    assert.equal(await page.locator('#throughput svg polyline').count(), 2);
    await page.screenshot({ path: screenshotPath(dir, 'operator-page.png'), fullPage: true });
  });
});
