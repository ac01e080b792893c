// The OpenAI-compatible server seen through the official `openai` client (v6): models, completions, chat
// (whole and streamed with usage), stop, max_tokens, seeds, logprobs, typed errors, auth, cancellation, and
// batching that is invisible: 8 concurrent greedy streams give exactly the text each gives alone.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { SKIP, metrics, startServer, waitFor } from './server_util.mjs';

const REF = '../shared/data/reference/llamacpp_stories260K_onceuponatime_n200.txt';

describe('aerollm serve with the openai client', { skip: SKIP }, () => {
  let srv, client;
  before(async () => {
    srv = await startServer(['-np', '8', '--timeout', '10']);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0, 'clean shutdown on SIGTERM');
  });

  test('lists the model', async () => {
    const list = await client.models.list();
    assert.equal(list.data.length, 1);
    assert.equal(list.data[0].id, 'stories260K.gguf');
    assert.equal(list.data[0].object, 'model');
    const one = await client.models.retrieve('stories260K.gguf');
    assert.equal(one.id, 'stories260K.gguf');
  });

  test('greedy completion continues the prompt exactly as llama.cpp does', async () => {
    const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 60, temperature: 0 });
    assert.equal(r.object, 'text_completion');
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 60);
    assert.ok(r.usage.prompt_tokens >= 5);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 60);
    const ref = readFileSync(REF, 'utf8').replace(/^ ?Once upon a time/, '');
    assert.ok(c.text.length > 100);
    assert.equal(c.text, ref.slice(0, c.text.length), 'continuation equals the llama.cpp reference');
  });

  test('completions default to 16 tokens; max_tokens is honoured', async () => {
    const r = await client.completions.create({ model: 'stories260K.gguf', prompt: 'Once upon a time', temperature: 0 });
    assert.equal(r.usage.completion_tokens, 16);
    const r5 = await client.completions.create({ model: 'stories260K.gguf', prompt: 'The cat', max_tokens: 5, temperature: 0 });
    assert.equal(r5.usage.completion_tokens, 5);
    assert.equal(r5.choices[0].finish_reason, 'length');
    const echo = await client.completions.create({ model: 'stories260K.gguf', prompt: 'The cat', max_tokens: 5, temperature: 0, echo: true });
    assert.equal(echo.choices[0].text, 'The cat' + r5.choices[0].text);
  });

  test('chat: whole and streamed with usage give the same text', async () => {
    const req = { model: 'stories260K.gguf', messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 40, temperature: 0 };
    const whole = await client.chat.completions.create(req);
    assert.equal(whole.object, 'chat.completion');
    const msg = whole.choices[0].message;
    assert.equal(msg.role, 'assistant');
    assert.equal(typeof msg.content, 'string');
    assert.ok(['stop', 'length'].includes(whole.choices[0].finish_reason));
    assert.ok(whole.usage.prompt_tokens > 5);

    const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null, first = true, n = 0;
    for await (const chunk of stream) {
      n++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.match(chunk.id, /^chatcmpl-/);
      if (chunk.usage) {
        assert.deepEqual(chunk.choices, []);
        usage = chunk.usage;
        continue;
      }
      assert.equal(chunk.usage, null);
      const ch = chunk.choices[0];
      if (first) assert.equal(ch.delta.role, 'assistant');
      first = false;
      if (ch.delta.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.ok(n >= 3);
    assert.equal(text, msg.content);
    assert.equal(finish, whole.choices[0].finish_reason);
    // the streamed request reuses the whole request's prompt from the KV cache; the counts are the same
    const counts = ({ prompt_tokens_details, ...u }) => u;
    assert.deepEqual(counts(usage), counts(whole.usage));
    assert.ok(usage.prompt_tokens_details.cached_tokens > 0);
  });

  test('stop strings end the output before the match, streamed or not', async () => {
    const base = await client.completions.create({ model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 60, temperature: 0 });
    const t = base.choices[0].text;
    const stop = 'named';
    assert.ok(t.includes(stop));
    const want = t.slice(0, t.indexOf(stop));
    const r = await client.completions.create({ model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop: [stop, 'zzzz'] });
    assert.equal(r.choices[0].text, want);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const s = await client.completions.create({ model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 60, temperature: 0, stop, stream: true });
    let text = '', finish = null;
    for await (const c of s) { text += c.choices[0]?.text ?? ''; finish = c.choices[0]?.finish_reason ?? finish; }
    assert.equal(text, want);
    assert.equal(finish, 'stop');
  });

  test('same seed, same text; another seed, another text', async () => {
    const req = { model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 48, temperature: 1.0, top_p: 1 };
    const a = await client.completions.create({ ...req, seed: 42 });
    const b = await client.completions.create({ ...req, seed: 42 });
    const c = await client.completions.create({ ...req, seed: 4242 });
    assert.equal(a.choices[0].text, b.choices[0].text);
    assert.notEqual(a.choices[0].text, c.choices[0].text);
  });

  test('penalties and logit_bias reach the sampler', async () => {
    const req = { model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 60, temperature: 0 };
    const plain = (await client.completions.create(req)).choices[0].text;
    const pen = (await client.completions.create({ ...req, frequency_penalty: 2 })).choices[0].text;
    assert.notEqual(pen, plain);
    const force = async (id) => {
      const r = await client.completions.create({ ...req, max_tokens: 5, logit_bias: { [id]: 100 }, logprobs: 1 });
      const toks = r.choices[0].logprobs.tokens;
      assert.equal(toks.length, 5);
      assert.equal(new Set(toks).size, 1, `every token is the biased one: ${JSON.stringify(toks)}`);
      return toks[0];
    };
    assert.notEqual(await force(400), await force(401));
  });

  test('logprobs: chat and legacy shapes', async () => {
    const r = await client.chat.completions.create({ model: 'stories260K.gguf', messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, r.usage.completion_tokens);
    for (const e of lp) {
      assert.ok(e.logprob <= 0);
      assert.equal(e.top_logprobs.length, 3);
      assert.equal(e.top_logprobs[0].token, e.token, 'greedy picks the most likely token');
      assert.ok(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob);
      assert.deepEqual(Buffer.from(e.bytes).toString('utf8'), e.token);
    }
    const c = await client.completions.create({ model: 'stories260K.gguf', prompt: 'Once', max_tokens: 6, temperature: 0, logprobs: 2 });
    const l = c.choices[0].logprobs;
    assert.equal(l.tokens.length, 6);
    assert.equal(l.tokens.join(''), c.choices[0].text);
    assert.equal(l.text_offset[0], 0);
    assert.equal(Object.keys(l.top_logprobs[0]).length, 2);
  });

  test('typed errors for bad requests', async () => {
    const m = [{ role: 'user', content: 'x' }];
    await assert.rejects(client.chat.completions.create({ model: 'stories260K.gguf', messages: m, n: 2 }),
      (e) => e instanceof OpenAI.BadRequestError && /\bn\b/.test(e.message) && e.param === 'n');
    await assert.rejects(client.chat.completions.create({ model: 'stories260K.gguf', messages: [] }), OpenAI.BadRequestError);
    await assert.rejects(client.chat.completions.create({ model: 'stories260K.gguf', messages: [{ role: 'wizard', content: 'x' }] }), OpenAI.BadRequestError);
    await assert.rejects(client.chat.completions.create({ model: 'stories260K.gguf', messages: m, max_tokens: 100000 }),
      (e) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
    await assert.rejects(client.chat.completions.create({ model: 'gpt-17', messages: m }),
      (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
    await assert.rejects(client.models.retrieve('gpt-17'), OpenAI.NotFoundError);
    await assert.rejects(client.completions.create({ model: 'stories260K.gguf', prompt: 'x', temperature: 'hot' }), OpenAI.BadRequestError);
  });

  test('8 concurrent greedy streams equal their solo outputs, sharing forward passes', async () => {
    const prompts = ['Once upon a time', 'The dog', 'Lily and Tom', 'One day, a bird', 'The sun was', 'A little boy named Tim',
      'In the park', 'Mom said'];
    const run = async (prompt) => {
      const s = await client.completions.create({ model: 'stories260K.gguf', prompt, max_tokens: 64, temperature: 0, stream: true });
      let text = '';
      for await (const c of s) text += c.choices[0]?.text ?? '';
      return text;
    };
    const solo = [];
    for (const p of prompts) solo.push(await run(p));
    assert.equal(new Set(solo).size, prompts.length, 'prompts give different texts');
    const m0 = await metrics(srv.base);
    const together = await Promise.all(prompts.map(run));
    const m1 = await metrics(srv.base);
    assert.deepEqual(together, solo);
    const steps = m1.aerollm_decode_steps_total - m0.aerollm_decode_steps_total;
    const tokens = m1.aerollm_generation_tokens_total - m0.aerollm_generation_tokens_total;
    assert.ok(tokens >= 8 * 32);
    assert.ok(steps < tokens / 2, `continuous batching: ${tokens} tokens took ${steps} passes`);
  });

  // A generation long enough (4000 tokens in a 4096 context) that it is still running when the client, having
  // read three chunks, leaves: the test waits for states, never for a time.
  test('a client that disconnects mid-stream frees its sequence', async () => {
    const long = await startServer(['-np', '1', '-c', '4096', '--quiet']);
    try {
      const c = new OpenAI({ baseURL: `${long.base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
      const m0 = await metrics(long.base);
      const s = await c.completions.create({ model: 'stories260K.gguf', prompt: 'Once', max_tokens: 4000, temperature: 0, stream: true, ignore_eos: true });
      let n = 0;
      for await (const _ of s) { if (++n === 3) break; } // break aborts the request
      const m1 = await waitFor(async () => {
        const m = await metrics(long.base);
        return m.aerollm_requests_active === 0 && m.aerollm_requests_cancelled_total > m0.aerollm_requests_cancelled_total
          ? m : null;
      }, 'the sequence freed');
      assert.equal(m1.aerollm_requests_active, 0);
      assert.equal(m1.aerollm_requests_cancelled_total, m0.aerollm_requests_cancelled_total + 1);
      assert.ok(m1.aerollm_generation_tokens_total - m0.aerollm_generation_tokens_total < 4000);
    } finally {
      assert.equal((await long.stop()).code, 0);
    }
  });

  test('health, metrics, tokenize and detokenize', async () => {
    assert.deepEqual(await (await fetch(`${srv.base}/health`)).json(), { status: 'ok' });
    const m = await metrics(srv.base);
    for (const k of ['aerollm_prompt_tokens_total', 'aerollm_generation_tokens_total', 'aerollm_tokens_per_second',
      'aerollm_stream_bytes_total', 'aerollm_stream_io_wait_seconds_total', 'aerollm_draft_acceptance_ratio',
      'aerollm_requests_total{status="2xx"}', 'aerollm_requests_total{status="4xx"}'])
      assert.ok(k in m, `metric ${k}`);
    assert.ok(m['aerollm_requests_total{status="4xx"}'] >= 5);
    const post = (p, b) => fetch(`${srv.base}${p}`, { method: 'POST', body: JSON.stringify(b) }).then((r) => r.json());
    const t = await post('/tokenize', { content: 'Once upon a time', add_special: false });
    assert.ok(t.tokens.length >= 4 && t.tokens.every(Number.isInteger));
    const d = await post('/detokenize', { tokens: t.tokens });
    assert.equal(d.content.trim(), 'Once upon a time');
    const p = await post('/tokenize', { content: 'Once', with_pieces: true });
    assert.ok(p.tokens.every((x) => Number.isInteger(x.id) && typeof x.piece === 'string'));
  });
});

describe('aerollm serve with --api-key, --alias, one slot and a queue of one', { skip: SKIP }, () => {
  let srv;
  before(async () => { srv = await startServer(['--api-key', 'sekret', '--alias', 'tiny-stories', '-np', '1', '--queue', '1']); });
  after(async () => { if (srv) await srv.stop(); });

  test('401 without the key, served with it, alias listed', async () => {
    const bad = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
    await assert.rejects(bad.chat.completions.create({ model: 'tiny-stories', messages: [{ role: 'user', content: 'x' }] }),
      OpenAI.AuthenticationError);
    const good = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'sekret', maxRetries: 0 });
    const list = await good.models.list();
    assert.equal(list.data[0].id, 'tiny-stories');
    const r = await good.chat.completions.create({ model: 'tiny-stories', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 });
    assert.ok(r.usage.completion_tokens <= 3);
    assert.equal((await fetch(`${srv.base}/health`)).status, 200, 'health needs no key');
  });

  test('a full queue answers 503 and the others are served', async () => {
    const good = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'sekret', maxRetries: 0 });
    const req = () => good.completions.create({ model: 'tiny-stories', prompt: 'Once', max_tokens: 300, ignore_eos: true, temperature: 0 });
    // the first request holds the one sequence before the others arrive: one is queued, the last finds the queue full
    const first = req();
    await waitFor(async () => (await metrics(srv.base)).aerollm_requests_active === 1, 'the first request generating');
    const res = await Promise.allSettled([first, req(), req()]);
    const rejected = res.filter((r) => r.status === 'rejected');
    assert.equal(rejected.length, 1);
    assert.ok(rejected[0].reason instanceof OpenAI.InternalServerError && rejected[0].reason.status === 503);
    assert.equal(rejected[0].reason.code, 'queue_full');
    for (const r of res.filter((x) => x.status === 'fulfilled')) assert.equal(r.value.usage.completion_tokens, 300);
  });
});

describe('aerollm serve with --chat-template-file', { skip: SKIP }, () => {
  let srv, dir;
  const TEMPLATE = "{% if messages[0].role == 'tool' %}{{ raise_exception('a conversation cannot start with a tool message') }}{% endif %}" +
    '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}';
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'aerollm-tmpl-'));
    writeFileSync(path.join(dir, 't.jinja'), TEMPLATE);
    srv = await startServer(['--chat-template-file', path.join(dir, 't.jinja'), '-np', '1']);
  });
  after(async () => {
    if (srv) await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('chats are rendered with the template; its exceptions are 400s', async () => {
    const client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'x', maxRetries: 0 });
    const models = await client.models.list();
    assert.equal(models.data[0].meta.chat_template, 'file');
    const r = await client.chat.completions.create({ model: 'stories260K.gguf', messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 4, temperature: 0 });
    const tok = await fetch(`${srv.base}/tokenize`, { method: 'POST', body: JSON.stringify({ content: '<s><user>Once upon a time<assistant>' }) });
    const ids = (await tok.json()).tokens;
    assert.equal(ids[0], 1, 'the rendered <s> is the BOS token, not added twice');
    assert.equal(ids.filter((t) => t === 1).length, 1);
    assert.equal(r.usage.prompt_tokens, ids.length);
    await assert.rejects(client.chat.completions.create({ model: 'stories260K.gguf', messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }),
      (e) => e instanceof OpenAI.BadRequestError && /cannot start with a tool message/.test(e.message));
  });
});
