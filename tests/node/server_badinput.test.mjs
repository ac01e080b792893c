// Bad input never crashes the server and never poisons the next request: each case gets the right status
// with an OpenAI-shaped error (or, for broken connections, is cut off cleanly), and a good request right
// after it still returns the expected text.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { SKIP, metrics, rawExchange, startServer, waitFor, waitIdle } from './server_util.mjs';

const M = 'stories260K.gguf';
const msgs = [{ role: 'user', content: 'hi' }];
const chat = (extra) => JSON.stringify({ model: M, messages: msgs, max_tokens: 4, ...extra });
const cmpl = (extra) => JSON.stringify({ model: M, prompt: 'Once', max_tokens: 4, ...extra });

// [name, path, body, status, param (undefined: not checked), code (undefined: not checked), method]
const CASES = [
  ['invalid JSON', '/v1/chat/completions', '{"messages": [', 400],
  ['body is an array', '/v1/chat/completions', '[1,2]', 400],
  ['empty body', '/v1/chat/completions', '', 400],
  ['JSON then garbage', '/v1/completions', '{"prompt":"a"} xyz', 400],
  ['duplicate keys', '/v1/completions', '{"prompt":"a","prompt":"b"}', 400],
  ['NUL escaped in the model name', '/v1/completions', '{"prompt":"a","model":"stories260K.gguf\\u0000x"}', 400, 'model'],
  ['invalid UTF-8', '/v1/completions', Buffer.from([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 400],
  ['nesting bomb', '/v1/chat/completions', '['.repeat(100000), 400],
  ['messages missing', '/v1/chat/completions', JSON.stringify({ model: M }), 400, 'messages'],
  ['messages empty', '/v1/chat/completions', chat({ messages: [] }), 400, 'messages'],
  ['messages not an array', '/v1/chat/completions', chat({ messages: 'hi' }), 400, 'messages'],
  ['unknown role', '/v1/chat/completions', chat({ messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages'],
  ['content is a number', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 5 }] }), 400, 'messages'],
  ['image content part', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400, 'messages'],
  ['max_tokens is a string', '/v1/chat/completions', chat({ max_tokens: '10' }), 400, 'max_tokens'],
  ['max_tokens zero', '/v1/chat/completions', chat({ max_tokens: 0 }), 400, 'max_tokens'],
  ['huge max_tokens', '/v1/chat/completions', chat({ max_tokens: 1000000000 }), 400, 'max_tokens', 'context_length_exceeded'],
  ['prompt longer than the context', '/v1/completions', cmpl({ prompt: 'the big dog ran. '.repeat(400) }), 400, 'prompt', 'context_length_exceeded'],
  ['temperature is a string', '/v1/chat/completions', chat({ temperature: 'hot' }), 400, 'temperature'],
  ['temperature out of range', '/v1/chat/completions', chat({ temperature: 7 }), 400, 'temperature'],
  ['top_p out of range', '/v1/completions', cmpl({ top_p: 2 }), 400, 'top_p'],
  ['n = 2', '/v1/chat/completions', chat({ n: 2 }), 400, 'n'],
  ['stream not a boolean', '/v1/chat/completions', chat({ stream: 'yes' }), 400, 'stream'],
  ['stream_options without stream', '/v1/chat/completions', chat({ stream_options: { include_usage: true } }), 400, 'stream_options'],
  ['stop is a number', '/v1/completions', cmpl({ stop: 5 }), 400, 'stop'],
  ['too many stop strings', '/v1/completions', cmpl({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }), 400, 'stop'],
  ['seed is a float', '/v1/completions', cmpl({ seed: 1.5 }), 400, 'seed'],
  ['top_logprobs too large', '/v1/chat/completions', chat({ logprobs: true, top_logprobs: 50 }), 400, 'top_logprobs'],
  ['logit_bias key not a token', '/v1/completions', cmpl({ logit_bias: { abc: 1 } }), 400, 'logit_bias'],
  ['prompt missing', '/v1/completions', JSON.stringify({ model: M }), 400, 'prompt'],
  ['several prompts', '/v1/completions', cmpl({ prompt: ['a', 'b'] }), 400, 'prompt'],
  ['token id outside the vocabulary', '/v1/completions', cmpl({ prompt: [1, 99999] }), 400, 'prompt'],
  ['unsupported response_format', '/v1/chat/completions', chat({ response_format: { type: 'json_schema' } }), 400, 'response_format'],
  ['unknown model', '/v1/chat/completions', chat({ model: 'gpt-17' }), 404, 'model', 'model_not_found'],
  ['unknown path', '/v1/engines', '{}', 404, undefined, 'unknown_url'],
  ['wrong method', '/v1/chat/completions', null, 405, undefined, undefined, 'GET'],
  ['detokenize ids out of range', '/detokenize', '{"tokens":[1,-5]}', 400, 'tokens'],
  ['tokenize without content', '/tokenize', '{"text":"a"}', 400, 'content'],
];

describe('bad input matrix', { skip: SKIP }, () => {
  let srv, baseline;
  const good = async () => {
    const r = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: cmpl({ temperature: 0 }) });
    assert.equal(r.status, 200);
    const j = await r.json();
    return j.choices[0].text;
  };
  before(async () => {
    srv = await startServer(['-np', '2', '--timeout', '2', '--max-body', '1M']);
    baseline = await good();
    assert.ok(baseline.length > 0);
  });
  after(async () => {
    if (srv) assert.equal((await srv.stop()).code, 0);
  });

  for (const [name, path, body, status, param, code, method] of CASES) {
    test(`${name} -> ${status}`, async () => {
      const r = await fetch(`${srv.base}${path}`, { method: method ?? 'POST', body: method === 'GET' ? undefined : body,
        headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, status);
      const j = await r.json();
      assert.equal(typeof j.error.message, 'string');
      assert.ok(j.error.message.length > 5);
      assert.equal(typeof j.error.type, 'string');
      assert.ok('param' in j.error && 'code' in j.error);
      if (param !== undefined) assert.equal(j.error.param, param, j.error.message);
      if (code !== undefined) assert.equal(j.error.code, code);
      assert.equal(await good(), baseline);
    });
  }

  test('10 MB body -> 413', async () => {
    const big = JSON.stringify({ model: M, prompt: 'x'.repeat(10 << 20) });
    const r = await fetch(`${srv.base}/v1/completions`, { method: 'POST', body: big });
    assert.equal(r.status, 413);
    assert.match((await r.json()).error.message, /limit/);
    assert.equal(await good(), baseline);
  });

  test('a half-sent request that stalls is cut off after the timeout, others are served meanwhile', async () => {
    const t0 = Date.now();
    const stalled = rawExchange(srv.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt":',
      { keepOpen: true, timeoutMs: 8000 });
    const stalledHeaders = rawExchange(srv.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le',
      { keepOpen: true, timeoutMs: 8000 });
    assert.equal(await good(), baseline);
    const [a, b] = await Promise.all([stalled, stalledHeaders]);
    assert.ok(a.closed && b.closed, 'server closed the stalled connections');
    assert.ok(Date.now() - t0 < 7000);
    assert.equal(await good(), baseline);
  });

  test('garbage instead of HTTP gets a 400 or a closed connection', async () => {
    const r = await rawExchange(srv.port, 'HELLO THERE\r\n\r\n', { timeoutMs: 4000 });
    assert.ok(r.closed || /^HTTP\/1\.[01] 4\d\d/.test(r.data), JSON.stringify(r.data.slice(0, 40)));
    const r2 = await rawExchange(srv.port, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) % 256)), { timeoutMs: 4000 });
    assert.ok(r2.closed || /^HTTP\/1\.[01] 4\d\d/.test(r2.data));
    assert.equal(await good(), baseline);
  });

  test('a client that stops reading mid-stream does not block others; its sequence is freed', async () => {
    const body = JSON.stringify({ model: M, prompt: 'Once', max_tokens: 500, ignore_eos: true, stream: true, logprobs: 5 });
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((res) => sock.on('connect', res));
    sock.on('error', () => {});
    sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await new Promise((res) => sock.once('data', res)); // headers arrived
    sock.pause(); // stop reading
    assert.equal(await good(), baseline);
    sock.destroy();
    const m = await waitIdle(srv.base);
    assert.equal(m.aerollm_requests_active, 0);
    assert.equal(await good(), baseline);
  });

  // The client leaves once the server reports its request generating (a state, not a delay), and the generation is
  // long enough (4000 tokens in a 4096 context: seconds of work) that it cannot end before the server notices.
  test('a client that leaves during a non-streamed generation frees its sequence', async () => {
    const long = await startServer(['-np', '1', '-c', '4096', '--quiet']);
    try {
      const m0 = await metrics(long.base);
      const body = JSON.stringify({ model: M, prompt: 'Once', max_tokens: 4000, ignore_eos: true });
      const sock = net.connect(long.port, '127.0.0.1');
      sock.on('error', () => {});
      await new Promise((res) => sock.on('connect', res));
      sock.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await waitFor(async () => {
        const m = await metrics(long.base);
        return m.aerollm_requests_active === 1 && m.aerollm_generation_tokens_total > m0.aerollm_generation_tokens_total;
      }, 'the request generating');
      sock.destroy();
      const m = await waitFor(async () => {
        const x = await metrics(long.base);
        return x.aerollm_requests_active === 0 && x.aerollm_requests_cancelled_total > m0.aerollm_requests_cancelled_total
          ? x : null;
      }, 'the sequence freed');
      assert.equal(m.aerollm_requests_cancelled_total, m0.aerollm_requests_cancelled_total + 1);
      assert.ok(m.aerollm_generation_tokens_total - m0.aerollm_generation_tokens_total < 4000);
      const r = await fetch(`${long.base}/v1/completions`, { method: 'POST', body: cmpl({ temperature: 0 }) });
      assert.equal(r.status, 200);
      assert.ok((await r.json()).choices[0].text.length > 0);
    } finally {
      assert.equal((await long.stop()).code, 0);
    }
    assert.equal(await good(), baseline);
  });
});
