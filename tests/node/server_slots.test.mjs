// llama-server's slot files (--slot-save-path, POST /slots/ID?action=save|restore|erase): a sequence's KV cache
// saved after a request, the sequence erased, the file restored, and a request sharing the prompt then decodes
// only its new tokens with the same greedy text; bad ids, actions, names, busy-free refusals and a server
// without the flag answer clearly.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SKIP, post, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog.';

describe('slot files', { skip: SKIP }, () => {
  let srv, dir;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aero_slots_'));
    srv = await startServer(['-np', '1', '--slot-save-path', dir]);
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const complete = async () => {
    const res = await post(srv.base, '/v1/completions', { model: M, prompt: PROMPT, max_tokens: 16, temperature: 0 });
    assert.equal(res.status, 200, res.body);
    return JSON.parse(res.body);
  };
  const slot = async (id, action, body) => post(srv.base, `/slots/${id}?action=${action}`, body ?? {});

  test('save, erase, restore: the restored prefix is reused and the text is unchanged', async () => {
    const cold = await complete();
    let r = await slot(0, 'save', { filename: 'a.kv' });
    assert.equal(r.status, 200, r.body);
    const saved = JSON.parse(r.body);
    assert.equal(saved.id_slot, 0);
    assert.ok(saved.n_saved >= cold.usage.prompt_tokens, r.body);
    assert.ok(existsSync(join(dir, 'a.kv')));
    assert.deepEqual(readdirSync(dir), ['a.kv']); // no temporary file left behind
    r = await slot(0, 'erase');
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).n_erased, saved.n_saved);
    r = await slot(0, 'restore', { filename: 'a.kv' });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).n_restored, saved.n_saved);
    const warm = await complete();
    assert.equal(warm.choices[0].text, cold.choices[0].text);
    assert.equal(warm.usage.prompt_tokens_details.cached_tokens, warm.usage.prompt_tokens - 1);
  });

  test('refusals: bad id, action, file name, missing or damaged file', async () => {
    assert.equal((await slot(7, 'save', { filename: 'b.kv' })).status, 400);
    assert.equal((await slot('x', 'save', { filename: 'b.kv' })).status, 400);
    assert.equal((await slot(0, 'load', { filename: 'b.kv' })).status, 400);
    assert.equal((await slot(0, 'save', {})).status, 400);
    assert.equal((await slot(0, 'save', { filename: '../escape.kv' })).status, 400);
    assert.equal((await slot(0, 'restore', { filename: 'missing.kv' })).status, 500);
    writeFileSync(join(dir, 'junk.kv'), 'not a cache file');
    const r = await slot(0, 'restore', { filename: 'junk.kv' });
    assert.equal(r.status, 400, r.body);
    // the sequence is usable afterwards
    await complete();
  });
});

describe('slot files off', { skip: SKIP }, () => {
  test('without --slot-save-path: 501 naming the flag', async () => {
    const srv = await startServer(['-np', '1']);
    try {
      const r = await post(srv.base, '/slots/0?action=save', { filename: 'a.kv' });
      assert.equal(r.status, 501, r.body);
      assert.match(r.body, /--slot-save-path/);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
