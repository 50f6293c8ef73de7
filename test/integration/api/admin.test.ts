import assert from 'node:assert/strict';
import { lstat, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AdminError, startAdmin, type AdminActions, type AdminPaths } from '../../../src/api/admin.js';
import { tempDir } from '../../support/tempdir.js';

/** Actions that only count the pauses they were asked for. */
function counting(): AdminActions & { paused: number } {
  const actions = {
    paused: 0,
    holds: async () => [],
    release: async () => null,
    reject: async () => null,
    pause: async () => ({ paused: ++actions.paused }),
    resume: async () => null,
    state: async () => ({}),
  };
  return actions;
}

/** POST /pause on the socket with `authorization` as given (none when undefined): the HTTP status. */
function pause(socket: string, authorization?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method: 'POST',
        path: '/pause',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ reason: 'test' }));
  });
}

/** A POST on the socket whose body leaves in `parts`, a pause between them: the status and the JSON answer. */
function post(socket: string, token: string, path: string, parts: Buffer[]): Promise<[number, unknown]> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method: 'POST',
        path,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve([res.statusCode ?? 0, JSON.parse(text)]));
      },
    );
    req.on('error', reject);
    const send = (i: number): void => {
      if (i === parts.length - 1) req.end(parts[i]);
      else {
        req.write(parts[i]);
        setTimeout(() => send(i + 1), 50);
      }
    };
    send(0);
  });
}

async function paths(t: Parameters<typeof tempDir>[0]): Promise<AdminPaths> {
  const dir = await tempDir(t, 'admin');
  return { socket: path.join(dir, 'admin.sock'), tokenFile: path.join(dir, 'admin.token') };
}

describe('admin interface', () => {
  it('makes a 0600 token of 64 hex characters when there is none, and answers only a caller presenting it', async (t) => {
    const p = await paths(t);
    const actions = counting();
    const admin = await startAdmin(p, actions);
    t.after(() => admin.close());
    const token = (await readFile(p.tokenFile, 'utf8')).trim();
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.equal((await stat(p.tokenFile)).mode & 0o777, 0o600);
    assert.equal(await pause(p.socket), 401);
    assert.equal(await pause(p.socket, 'Bearer '), 401);
    assert.equal(await pause(p.socket, `Bearer ${token.slice(1)}`), 401);
    assert.equal(await pause(p.socket, `Bearer ${token}`), 200);
    assert.equal(actions.paused, 1);
  });

  // an operator's `touch`, or a token file cut short: an empty token must not open the door to callers with none
  for (const [what, text] of [
    ['empty', ''],
    ['a newline', '\n'],
    ['one character', 'x\n'],
    ['31 characters', `${'a'.repeat(31)}\n`],
  ] as const) {
    it(`refuses to start with a token file holding ${what}, naming the file and what it expects`, async (t) => {
      const p = await paths(t);
      await writeFile(p.tokenFile, text, { mode: 0o600 });
      const actions = counting();
      await assert.rejects(
        startAdmin(p, actions).then(async (admin) => {
          const status = await pause(p.socket);
          await admin.close();
          return status;
        }),
        (err: unknown) =>
          err instanceof AdminError &&
          err.code === 'admin_refused' &&
          err.message.includes(p.tokenFile) &&
          err.message.includes('at least 32'),
      );
      assert.equal(actions.paused, 0);
    });
  }

  // an operator's typo pointing admin.socket at the member's key file must not delete the key
  it('refuses to start when admin.socket names a regular file, and leaves the file as it was', async (t) => {
    const p = await paths(t);
    const key = path.join(path.dirname(p.socket), 'member.key');
    await writeFile(key, 'the signing key\n', { mode: 0o600 });
    await assert.rejects(
      startAdmin({ ...p, socket: key }, counting()).then((admin) => admin.close()),
      (err: unknown) =>
        err instanceof AdminError &&
        err.code === 'socket_path' &&
        err.message.includes('admin.socket') &&
        err.message.includes(key) &&
        err.message.includes('not a socket'),
    );
    assert.equal(await readFile(key, 'utf8'), 'the signing key\n');
  });

  it('replaces a stale socket left by an earlier run and answers on it', async (t) => {
    const p = await paths(t);
    // closing a server unlinks its socket, as a killed member does not: the socket is moved away
    // from under the earlier server first, so it stays behind with nobody listening
    const earlier = createServer();
    const elsewhere = `${p.socket}.earlier`;
    await new Promise<void>((resolve) => earlier.listen(elsewhere, resolve));
    await rename(elsewhere, p.socket);
    await new Promise<void>((resolve) => earlier.close(() => resolve()));
    assert.ok((await lstat(p.socket)).isSocket());
    const admin = await startAdmin(p, counting());
    t.after(() => admin.close());
    const token = (await readFile(p.tokenFile, 'utf8')).trim();
    assert.equal(await pause(p.socket, `Bearer ${token}`), 200);
  });

  it('answers a body that is not JSON and an id that is not percent-encoded right with a 400 naming them, and reads a reason whose bytes came in pieces', async (t) => {
    const p = await paths(t);
    const reasons: string[] = [];
    const admin = await startAdmin(p, { ...counting(), pause: async (reason: string) => reasons.push(reason) });
    t.after(() => admin.close());
    const token = (await readFile(p.tokenFile, 'utf8')).trim();
    assert.deepEqual(await post(p.socket, token, '/pause', [Buffer.from('{"reason": "disk')]), [
      400,
      { error: 'bad_request', parameter: 'body', value: '{"reason": "disk', expected: 'a JSON object' },
    ]);
    assert.deepEqual(await post(p.socket, token, '/holds/0x%zz:0/release', [Buffer.from('')]), [
      400,
      { error: 'bad_request', parameter: 'id', value: '0x%zz:0', expected: 'a percent-encoded request id' },
    ]);
    assert.deepEqual(await post(p.socket, token, '/pause', [Buffer.from('{"reason": " "}')]), [
      400,
      { error: 'bad_request', parameter: 'reason', value: ' ', expected: '1–500 characters' },
    ]);
    // "é" is two bytes in UTF-8; the first piece ends between them
    const body = Buffer.from(JSON.stringify({ reason: 'disque plein: réparation' }));
    const split = body.indexOf(Buffer.from('é')) + 1;
    assert.equal((await post(p.socket, token, '/pause', [body.subarray(0, split), body.subarray(split)]))[0], 200);
    assert.deepEqual(reasons, ['disque plein: réparation']);
  });
});
