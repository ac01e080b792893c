// llama-server's introspection endpoints (/props, /slots) and the small fixes users hit: an escaped NUL in a
// string is valid JSON, `max_tokens: 5.0` is an integer, /v1/models' `created` stays put, /tokenize adds no
// BOS unless asked, and a cancelled request's log line counts the tokens it did generate.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';

import { SKIP, startServer, waitFor } from './server_util.mjs';

const M = 'stories260K.gguf';

describe('props, slots and small fixes', { skip: SKIP }, () => {
  let srv, client;
  const post = (p, b) => fetch(`${srv.base}${p}`, { method: 'POST', body: typeof b === 'string' ? b : JSON.stringify(b) });
  before(async () => {
    srv = await startServer(['-np', '2', '--temp', '0.5']);
    client = new OpenAI({ baseURL: `${srv.base}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  test('GET /props', async () => {
    const p = await (await fetch(`${srv.base}/props`)).json();
    assert.equal(p.total_slots, 2);
    assert.equal(p.model_alias, M);
    assert.match(p.model_path, /stories260K\.gguf$/);
    assert.equal(p.default_generation_settings.n_ctx, 2048);
    assert.ok(Math.abs(p.default_generation_settings.params.temperature - 0.5) < 1e-6);
    assert.equal(typeof p.chat_template, 'string');
    assert.equal(p.chat_template_source, 'chatml fallback');
    assert.equal(p.bos_token, '<s>');
    assert.equal(p.draft, null);
  });

  test('GET /slots shows a running request and idle slots', async () => {
    const idle = await (await fetch(`${srv.base}/slots`)).json();
    assert.equal(idle.length, 2);
    assert.ok(idle.every((s) => s.is_processing === false && s.id_task === -1));
    const running = post('/v1/completions', { prompt: 'Once', max_tokens: 1200, ignore_eos: true, temperature: 0 });
    const busy = await waitFor(async () => {
      const s = await (await fetch(`${srv.base}/slots`)).json();
      return s.find((x) => x.is_processing && x.next_token.n_decoded > 20) ? s : null;
    }, 'a slot generating');
    const s = busy.find((x) => x.is_processing);
    assert.equal(s.params.n_predict, 1200);
    assert.equal(s.params.temperature, 0);
    assert.equal(s.state, 'generating');
    assert.equal(s.tokens_cached, s.n_prompt_tokens + s.next_token.n_decoded);
    assert.equal(s.next_token.n_remain, 1200 - s.next_token.n_decoded);
    assert.ok(s.tokens_per_second > 0);
    assert.equal(busy.filter((x) => !x.is_processing).length, 1);
    assert.equal((await running).status, 200);
  });

  test('an escaped NUL in a prompt is accepted', async () => {
    const r = await post('/v1/completions', '{"model":"stories260K","prompt":"Once\\u0000 upon","max_tokens":3}');
    assert.equal(r.status, 200, await r.clone().text());
    const t = await (await post('/tokenize', '{"content":"a\\u0000b"}')).json();
    assert.ok(t.tokens.length >= 2);
  });

  test('max_tokens: 5.0 is an integer', async () => {
    const r = await post('/v1/completions', { prompt: 'Once', max_tokens: 5.0, ignore_eos: true });
    // JSON.stringify writes 5.0 as 5: send the text form a Python client produces
    const r2 = await post('/v1/completions', '{"prompt":"Once","max_tokens":5.0,"ignore_eos":true}');
    assert.equal(r.status, 200);
    assert.equal(r2.status, 200);
    assert.equal((await r2.json()).usage.completion_tokens, 5);
    const bad = await post('/v1/completions', '{"prompt":"Once","max_tokens":5.5}');
    assert.equal(bad.status, 400);
  });

  test('/v1/models created is the start time', async () => {
    const a = await client.models.list();
    await new Promise((r) => setTimeout(r, 1100));
    const b = await client.models.list();
    assert.equal(a.data[0].created, b.data[0].created);
  });

  test('/tokenize adds BOS only when asked', async () => {
    const plain = (await (await post('/tokenize', { content: 'Once' })).json()).tokens;
    const withBos = (await (await post('/tokenize', { content: 'Once', add_special: true })).json()).tokens;
    assert.notEqual(plain[0], 1);
    assert.equal(withBos[0], 1);
    assert.deepEqual(withBos.slice(1), plain);
  });

  test('a cancelled request logs the tokens it generated', async () => {
    await new Promise((resolve) => {
      const data = JSON.stringify({ prompt: 'Once', max_tokens: 1500, ignore_eos: true, stream: true });
      const req = http.request({ host: '127.0.0.1', port: srv.port, path: '/v1/completions', method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
        let n = 0;
        res.on('data', () => { if (++n === 30) { req.destroy(); resolve(); } });
      });
      req.on('error', () => {});
      req.end(data);
    });
    const line = await waitFor(() => srv.log().split('\n').find((l) => /finish=cancelled/.test(l)), 'the cancelled log line');
    const gen = Number(line.match(/gen=(\d+)/)[1]);
    assert.ok(gen >= 20, line);
  });
});
