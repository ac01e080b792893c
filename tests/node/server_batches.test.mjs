// The OpenAI Files and Batch API through the official client: a JSONL file uploaded with files.create, a batch
// over it, polled to completion; every custom_id answered once, bodies equal to the server's own answers to the
// same requests (greedy), failed requests in the error file, an invalid input file failing validation with line
// numbers, cancel, list, delete, 404s, and files kept in --files-dir across a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import OpenAI, { toFile } from 'openai';

import { SKIP, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';
const PROMPTS = ['Once upon a time', 'Lily and Tom', 'The sun was', 'A little dog', 'One day, a bird',
  'The cat sat', 'Tim had a', 'In the park'];

const chatBody = (p, n) => ({ model: M, messages: [{ role: 'user', content: p }], max_tokens: n, temperature: 0 });
const line = (id, url, body) => JSON.stringify({ custom_id: id, method: 'POST', url, body });
const jsonl = (lines) => toFile(Buffer.from(lines.join('\n') + '\n'), 'input.jsonl');

// Polls a batch until it is in a final state.
async function settle(client, id, ms = 60000) {
  const t0 = Date.now();
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
    if (Date.now() - t0 > ms) throw new Error(`batch ${id} still ${b.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const parseLines = (text) => text.split('\n').filter((l) => l).map((l) => JSON.parse(l));

describe('files and batches', { skip: SKIP }, () => {
  let srv, client, dir;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aero_files_'));
    srv = await startServer(['-np', '4', '--files-dir', dir]);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a chat batch: every custom_id once, bodies equal to direct answers, bad requests in the error file',
    async () => {
      const lines = PROMPTS.map((p, i) => line(`req-${i}`, '/v1/chat/completions', chatBody(p, 10 + i)));
      lines.push(line('bad-messages', '/v1/chat/completions', { model: M, messages: 'not an array' }));
      lines.push(line('bad-stream', '/v1/chat/completions', { ...chatBody('x', 4), stream: true }));
      const file = await client.files.create({ file: await jsonl(lines), purpose: 'batch' });
      assert.equal(file.object, 'file');
      assert.equal(file.purpose, 'batch');
      assert.match(file.id, /^file-[0-9a-f]{24}$/);
      const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
        completion_window: '24h', metadata: { job: 'nightly' } });
      assert.equal(created.object, 'batch');
      assert.deepEqual(created.metadata, { job: 'nightly' });
      const b = await settle(client, created.id);
      assert.equal(b.status, 'completed', JSON.stringify(b));
      assert.deepEqual(b.request_counts, { total: lines.length, completed: PROMPTS.length, failed: 2 });
      assert.ok(b.completed_at >= b.created_at);
      const out = parseLines(await (await client.files.content(b.output_file_id)).text());
      const errs = parseLines(await (await client.files.content(b.error_file_id)).text());
      assert.deepEqual(out.map((o) => o.custom_id).sort(), PROMPTS.map((_, i) => `req-${i}`).sort());
      assert.deepEqual(errs.map((o) => o.custom_id).sort(), ['bad-messages', 'bad-stream']);
      for (const e of errs) assert.equal(e.response.status_code, 400, JSON.stringify(e));
      const ids = new Set();
      for (const o of out) {
        assert.equal(o.response.status_code, 200);
        assert.equal(o.error, null);
        ids.add(o.id);
        const i = Number(o.custom_id.slice(4));
        const direct = await client.chat.completions.create(chatBody(PROMPTS[i], 10 + i));
        assert.equal(o.response.body.choices[0].message.content, direct.choices[0].message.content, o.custom_id);
        assert.equal(o.response.body.usage.prompt_tokens, direct.usage.prompt_tokens); // cached_tokens may differ
        assert.equal(o.response.body.usage.completion_tokens, direct.usage.completion_tokens);
      }
      assert.equal(ids.size, out.length, 'request ids are unique');
      const list = await client.files.list();
      const listed = list.data.map((f) => f.id);
      for (const id of [file.id, b.output_file_id, b.error_file_id]) assert.ok(listed.includes(id), id);
    });

  test('completions and embeddings endpoints; a mismatched url fails validation with its line', async () => {
    const f = await client.files.create({ file: await jsonl([
      line('c1', '/v1/completions', { model: M, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 })]),
    purpose: 'batch' });
    const b = await settle(client, (await client.batches.create({ input_file_id: f.id, endpoint: '/v1/completions',
      completion_window: '24h' })).id);
    assert.equal(b.status, 'completed');
    const [o] = parseLines(await (await client.files.content(b.output_file_id)).text());
    const direct = await client.completions.create({ model: M, prompt: 'Once upon a time', max_tokens: 8,
      temperature: 0 });
    assert.equal(o.response.body.choices[0].text, direct.choices[0].text);

    const bad = await client.files.create({ file: await jsonl([
      line('ok', '/v1/chat/completions', chatBody('hi', 4)),
      line('wrong', '/v1/completions', { model: M, prompt: 'x' }),
      '{"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
      'not json']), purpose: 'batch' });
    const v = await settle(client, (await client.batches.create({ input_file_id: bad.id,
      endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
    assert.equal(v.status, 'failed');
    assert.deepEqual(v.errors.data.map((e) => e.line), [2, 3, 4]);
    assert.equal(v.errors.data[0].code, 'mismatched_endpoint');
    assert.equal(v.errors.data[1].code, 'duplicate_custom_id');
    assert.equal(v.output_file_id, null);
  });

  test('cancel, list, delete and the refusals', async () => {
    const many = Array.from({ length: 40 }, (_, i) => line(`n${i}`, '/v1/chat/completions', chatBody(`Story ${i}`, 48)));
    const f = await client.files.create({ file: await jsonl(many), purpose: 'batch' });
    const started = await client.batches.create({ input_file_id: f.id, endpoint: '/v1/chat/completions',
      completion_window: '24h' });
    const c = await client.batches.cancel(started.id);
    assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
    const b = await settle(client, started.id);
    assert.equal(b.status, 'cancelled');
    assert.ok(b.request_counts.completed < 40, JSON.stringify(b.request_counts));
    const page = await client.batches.list({ limit: 2 });
    assert.equal(page.data.length, 2);
    assert.equal(page.data[0].id, started.id, 'newest first');
    await assert.rejects(client.batches.retrieve('batch_nope'), (e) => e.status === 404);
    await assert.rejects(client.files.retrieve('file-000000000000000000000000'), (e) => e.status === 404);
    await assert.rejects(client.files.retrieve('../../etc/passwd'), (e) => e.status === 404);
    await assert.rejects(client.batches.create({ input_file_id: 'file-000000000000000000000000',
      endpoint: '/v1/chat/completions', completion_window: '24h' }), (e) => e.status === 400);
    await assert.rejects(client.batches.create({ input_file_id: f.id, endpoint: '/v1/responses',
      completion_window: '24h' }), (e) => e.status === 400);
    await assert.rejects(client.files.create({ file: await jsonl(['{}']), purpose: 'bogus' }), (e) => e.status === 400);
    const raw = await fetch(`${srv.base}/v1/files`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: '{}' });
    assert.equal(raw.status, 400);
    const d = await client.files.delete(f.id);
    assert.deepEqual(d, { id: f.id, object: 'file', deleted: true });
    await assert.rejects(client.files.retrieve(f.id), (e) => e.status === 404);
    assert.ok(!readdirSync(dir).some((n) => n.startsWith(f.id)), 'the bytes are gone too');
  });

  test('files in --files-dir outlive a restart; no temporary file is left', async () => {
    const f = await client.files.create({ file: await jsonl(['{"a": 1}']), purpose: 'user_data' });
    assert.equal((await srv.stop()).code, 0);
    srv = await startServer(['--files-dir', dir]);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
    const again = await client.files.retrieve(f.id);
    assert.equal(again.bytes, f.bytes);
    assert.equal(await (await client.files.content(f.id)).text(), '{"a": 1}\n');
    assert.ok(!readdirSync(dir).some((n) => n.endsWith('.tmp')), readdirSync(dir).join(' '));
  });
});

describe('files without --files-dir', { skip: SKIP }, () => {
  test('a private directory, removed at stop; an upload past --max-file-size is 413', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'aero_files_tmp_'));
    const srv = await startServer(['--max-file-size', '4K'], { TMPDIR: tmp });
    try {
      const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
      await client.files.create({ file: await jsonl(['{}']), purpose: 'batch' });
      assert.equal(readdirSync(tmp).length, 1, 'the store is under TMPDIR');
      await assert.rejects(client.files.create({ file: await jsonl(['x'.repeat(8000)]), purpose: 'batch' }),
        (e) => e.status === 413);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
    assert.deepEqual(readdirSync(tmp), [], 'the private directory is removed at stop');
    rmSync(tmp, { recursive: true, force: true });
  });
});
