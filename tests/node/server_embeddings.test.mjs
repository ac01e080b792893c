// /v1/embeddings (serve --embeddings, llama-server's behaviour): the mean of the last hidden states (after the
// output norm), L2-normalized; input as a string, strings, token ids or arrays of them; OpenAI's response shape
// through the official client (which asks for base64) and as floats; the same vector whatever the batch it ran
// in; 400 on bad input, 501 without --embeddings.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { SKIP, post, startServer } from './server_util.mjs';

const M = 'stories260K.gguf';
const N_EMBD = 64; // stories260K's hidden size

const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));

describe('embeddings', { skip: SKIP }, () => {
  let srv;
  let client;
  before(async () => {
    srv = await startServer(['-np', '3', '--embeddings']);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x' });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  test('one string: a unit vector of the hidden size, usage counts the tokens', async () => {
    const r = await client.embeddings.create({ model: M, input: 'Once upon a time there was a cat.' });
    assert.equal(r.object, 'list');
    assert.equal(r.model, M);
    assert.equal(r.data.length, 1);
    assert.equal(r.data[0].object, 'embedding');
    assert.equal(r.data[0].index, 0);
    const v = r.data[0].embedding;
    assert.equal(v.length, N_EMBD);
    assert.ok(Math.abs(norm(v) - 1) < 1e-5, `norm ${norm(v)}`);
    const tok = JSON.parse((await post(srv.base, '/tokenize', { content: 'Once upon a time there was a cat.', add_special: true })).body);
    assert.equal(r.usage.prompt_tokens, tok.tokens.length);
    assert.equal(r.usage.total_tokens, tok.tokens.length);
  });

  test('several inputs: in order, deterministic, the same vector alone or batched with others', async () => {
    const texts = ['The dog ran.', 'A girl named Lily', 'The dog ran.', 'Sun, sky and a big tree.'];
    const alone = [];
    for (const t of texts) alone.push((await client.embeddings.create({ model: M, input: t })).data[0].embedding);
    const both = await client.embeddings.create({ model: M, input: texts });
    assert.deepEqual(both.data.map((d) => d.index), [0, 1, 2, 3]);
    for (let i = 0; i < texts.length; i++) assert.deepEqual(both.data[i].embedding, alone[i], `input ${i}`);
    assert.deepEqual(both.data[0].embedding, both.data[2].embedding);
    assert.notDeepEqual(both.data[0].embedding, both.data[1].embedding);
    // concurrent requests beside a generation
    const [a, , c] = await Promise.all([
      client.embeddings.create({ model: M, input: texts[1] }),
      client.completions.create({ model: M, prompt: 'Once', max_tokens: 20, temperature: 0 }),
      client.embeddings.create({ model: M, input: [texts[3], texts[0]] }),
    ]);
    assert.deepEqual(a.data[0].embedding, alone[1]);
    assert.deepEqual(c.data[0].embedding, alone[3]);
    assert.deepEqual(c.data[1].embedding, alone[0]);
  });

  test('token ids equal their text; floats equal the base64 the client decodes', async () => {
    const text = 'Tom had a red ball.';
    const tok = JSON.parse((await post(srv.base, '/tokenize', { content: text, add_special: true })).body).tokens;
    const byText = (await client.embeddings.create({ model: M, input: text })).data[0].embedding;
    const byIds = (await client.embeddings.create({ model: M, input: tok })).data[0].embedding;
    assert.deepEqual(byIds, byText);
    const many = await client.embeddings.create({ model: M, input: [tok, tok.slice(0, 3)] });
    assert.deepEqual(many.data[0].embedding, byText);
    assert.equal(many.usage.prompt_tokens, tok.length + 3);
    const res = await post(srv.base, '/v1/embeddings', { model: M, input: text, encoding_format: 'float' });
    assert.equal(res.status, 200);
    const floats = JSON.parse(res.body).data[0].embedding;
    assert.equal(floats.length, N_EMBD);
    for (let i = 0; i < N_EMBD; i++) assert.equal(Math.fround(floats[i]), byText[i]);
  });

  test('bad input is 400 naming the field; an unknown model 404', async () => {
    for (const [body, param] of [
      [{ input: '' }, 'input'],
      [{ input: [] }, 'input'],
      [{}, 'input'],
      [{ input: 5 }, 'input'],
      [{ input: [1, 'a'] }, 'input'],
      [{ input: ['ok', 3] }, 'input'],
      [{ input: [[]] }, 'input'],
      [{ input: [999999] }, 'input'],
      [{ input: [-1] }, 'input'],
      [{ input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      [{ input: 'x', dimensions: 8 }, 'dimensions'],
      [{ input: 'x', model: 3 }, 'model'],
    ]) {
      const res = await post(srv.base, '/v1/embeddings', body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.body}`);
      const e = JSON.parse(res.body).error;
      assert.equal(e.type, 'invalid_request_error');
      assert.equal(e.param, param, JSON.stringify(body));
    }
    const res = await post(srv.base, '/v1/embeddings', { input: 'x', model: 'other' });
    assert.equal(res.status, 404);
    const long = await post(srv.base, '/v1/embeddings', { input: 'word '.repeat(5000) });
    assert.equal(long.status, 400);
    assert.equal(JSON.parse(long.body).error.code, 'context_length_exceeded');
  });
});

describe('embeddings off', { skip: SKIP }, () => {
  test('without --embeddings the endpoint answers 501', async () => {
    const srv = await startServer(['-np', '1']);
    try {
      const res = await post(srv.base, '/v1/embeddings', { input: 'x' });
      assert.equal(res.status, 501);
      assert.match(JSON.parse(res.body).error.message, /--embeddings/);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
