// Load: 500 requests over 32 keep-alive connections (streamed and whole, completions and chat) against
// stories260K with 8 sequence slots. Every response must be well-formed and carry exactly the text that
// request gives alone (greedy + batch invariance), nothing may fail, and RSS afterwards stays within 10%.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { SKIP, metrics, parseSSE, post, rssKiB, startServer, underASan, waitIdle } from './server_util.mjs';

const M = 'stories260K.gguf';
const PROMPTS = ['Once upon a time', 'The dog', 'Lily and Tom', 'One day, a bird', 'The sun was', 'A little boy', 'In the park', 'Mom said'];

function request(i) {
  const p = PROMPTS[i % PROMPTS.length];
  const chat = (i >> 3) % 2 === 1;
  const stream = (i >> 4) % 2 === 1;
  const body = chat ? { model: M, messages: [{ role: 'user', content: p }], max_tokens: 24, temperature: 0 }
                    : { model: M, prompt: p, max_tokens: 24, temperature: 0 };
  if (stream) body.stream = true;
  return { key: `${chat ? 'chat' : 'cmpl'}:${p}`, chat, stream, path: chat ? '/v1/chat/completions' : '/v1/completions', body };
}

// Text of a response, checking its shape strictly.
function textOf(req, res) {
  assert.equal(res.status, 200, res.body);
  if (!req.stream) {
    const j = JSON.parse(res.body);
    assert.equal(j.object, req.chat ? 'chat.completion' : 'text_completion');
    assert.ok(j.usage.completion_tokens <= 24);
    return req.chat ? j.choices[0].message.content : j.choices[0].text;
  }
  assert.match(res.headers['content-type'], /^text\/event-stream/);
  const chunks = parseSSE(res.body);
  let text = '', finishes = 0;
  chunks.forEach((c, k) => {
    assert.equal(c.id, chunks[0].id);
    const ch = c.choices[0];
    if (req.chat && k === 0) assert.equal(ch.delta.role, 'assistant');
    text += (req.chat ? ch.delta.content : ch.text) ?? '';
    if (ch.finish_reason) finishes++;
  });
  assert.equal(finishes, 1);
  assert.ok(chunks[chunks.length - 1].choices[0].finish_reason);
  return text;
}

describe('load: 500 requests over 32 connections', { skip: SKIP }, () => {
  let srv;
  before(async () => { srv = await startServer(['-np', '8', '--queue', '64', '--quiet']); });
  after(async () => { if (srv) assert.equal((await srv.stop()).code, 0); });

  test('no failures, no garbled streams, exact texts, RSS stable', async () => {
    const ref = new Map();
    for (let i = 0; i < 32; i++) {
      const req = request(i);
      if (ref.has(req.key) || req.stream) continue;
      ref.set(req.key, textOf(req, await post(srv.base, req.path, req.body)));
    }
    assert.equal(ref.size, 16);
    // n requests from index offset, 32 workers sharing a keep-alive agent of at most 32 sockets.
    const runWave = async (agent, n, offset) => {
      let next = 0, failures = 0;
      const worker = async () => {
        while (next < n) {
          const i = offset + next++;
          const req = request(i);
          try {
            const text = textOf(req, await post(srv.base, req.path, req.body, { agent }));
            assert.equal(text, ref.get(req.key), `request ${i} (${req.key}, stream ${req.stream})`);
          } catch (e) {
            failures++;
            if (failures < 4) console.error(e);
          }
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
      return failures;
    };
    const warm = new http.Agent({ keepAlive: true, maxSockets: 32 });
    // two warm-up waves: the allocator's arenas and the connection pools reach their steady size first
    assert.equal(await runWave(warm, 64, 0), 0, 'warm-up wave');
    assert.equal(await runWave(warm, 64, 64), 0, 'second warm-up wave');
    warm.destroy();
    await waitIdle(srv.base);
    const rss0 = rssKiB(srv.proc.pid);
    const m0 = await metrics(srv.base);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const t0 = Date.now();
    const failures = await runWave(agent, 500, 0);
    const secs = (Date.now() - t0) / 1000;
    assert.equal(failures, 0);
    assert.ok(Object.values(agent.freeSockets).flat().length <= 32);
    agent.destroy();
    const m1 = await waitIdle(srv.base);
    const rss1 = rssKiB(srv.proc.pid);
    // the wave, m0's /metrics and the polls before the one that returned m1
    assert.equal(m1['aerollm_requests_total{status="2xx"}'] - m0['aerollm_requests_total{status="2xx"}'], 500 + m1.polls);
    assert.equal(m1.aerollm_requests_active, 0);
    assert.equal(m1.aerollm_requests_queued, 0);
    const tokens = m1.aerollm_generation_tokens_total - m0.aerollm_generation_tokens_total;
    const steps = m1.aerollm_decode_steps_total - m0.aerollm_decode_steps_total;
    console.log(`load: 500 requests in ${secs.toFixed(1)} s, ${tokens} tokens in ${steps} passes ` +
      `(${(tokens / steps).toFixed(1)} tokens/pass), RSS ${rss0} -> ${rss1} KiB`);
    if (underASan(srv.proc.pid)) console.log('load: AddressSanitizer build, RSS bound not applicable (leaks are checked at exit)');
    else assert.ok(Math.abs(rss1 - rss0) <= rss0 * 0.10, `RSS ${rss0} -> ${rss1} KiB`);
  });
});
