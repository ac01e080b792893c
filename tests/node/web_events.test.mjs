// The web page's server side without a browser: the static files at "/" (open without the API key, with a
// policy that keeps the page on this server) and GET /v1/engine/events, the live view's server-sent events: JSON
// samples of a stable shape, several a second, whose layer cells move during a streamed generation under a small
// --mem, and a stream that ends cleanly when the server stops.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { HAVE_PAIR, TEACHER, startServer } from './server_util.mjs';

const STATES = /^[drwcpP]*$/;

// Reads server-sent events from a fetch response until `until(events)` is true or the stream ends.
async function readEvents(resp, until = () => false) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  const events = [];
  let buf = '';
  let ended = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      ended = true;
      break;
    }
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { event: 'message', data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) ev.event = line.slice(7);
        if (line.startsWith('data: ')) ev.data += line.slice(6);
      }
      events.push(ev);
    }
    if (until(events)) break;
  }
  if (!ended) await reader.cancel();
  return { events, ended };
}

describe('web page and engine events', { skip: HAVE_PAIR ? false : 'skipped: the bundled teacher is missing' }, () => {
  let srv;
  before(async () => {
    srv = await startServer(['--mem', '16M', '-np', '1', '--api-key', 'k3y'], {}, { model: TEACHER });
  });
  after(async () => {
    if (srv) await srv.stop();
  });
  const auth = { Authorization: 'Bearer k3y' };

  test('the page and its files are served from the binary, without the key', async () => {
    const r = await fetch(`${srv.base}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
    const html = await r.text();
    assert.match(html, /<script src="\/web\/app.js"/);
    for (const [f, type] of [['app.js', /javascript/], ['md.js', /javascript/], ['style.css', /text\/css/]]) {
      const a = await fetch(`${srv.base}/web/${f}`);
      assert.equal(a.status, 200, f);
      assert.match(a.headers.get('content-type'), type);
      assert.ok((await a.text()).length > 100);
    }
    assert.equal((await fetch(`${srv.base}/web/nothing.js`)).status, 401); // unknown files are not public
    assert.equal((await fetch(`${srv.base}/web/nothing.js`, { headers: auth })).status, 404);
    assert.equal((await fetch(`${srv.base}/v1/engine/events`)).status, 401);
    assert.equal((await fetch(`${srv.base}/v1/engine/events?interval_ms=5`, { headers: auth })).status, 400);
  });

  test('events: several JSON samples a second, of a stable shape', async () => {
    const t0 = Date.now();
    const r = await fetch(`${srv.base}/v1/engine/events?interval_ms=100`, { headers: auth });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const { events } = await readEvents(r, (e) => e.length >= 5);
    const secs = (Date.now() - t0) / 1000;
    assert.ok(secs >= 0.35 && secs < 5, `5 events at 100 ms took ${secs} s`);
    for (const ev of events) {
      const s = JSON.parse(ev.data);
      assert.equal(typeof s.t, 'number');
      assert.equal(s.model, 'aero-teacher-34M-Q8_0.gguf');
      assert.ok(s.n_units > 1);
      assert.equal(s.units.length, s.n_units);
      assert.match(s.units, STATES);
      assert.equal(s.head_unit, s.n_units - 1);
      assert.ok(Array.isArray(s.pinned) && Array.isArray(s.window) && Array.isArray(s.requests));
      assert.ok(s.slots >= 1 && s.window.length <= s.slots);
      for (const k of ['gbps', 'read_gbps', 'floor_gbps', 'pass_ms', 'floor_ms', 'passes_per_s', 'passes'])
        assert.equal(typeof s.disk[k], 'number', k);
      assert.ok(s.disk.streamed_bytes_per_pass > 0, 'the teacher streams under --mem 16M');
      for (const k of ['active', 'queued', 'n_seq', 'n_ctx', 'tokens_per_s', 'steps', 'gen_tokens'])
        assert.equal(typeof s.sched[k], 'number', k);
      assert.equal(s.spec.on, false);
      for (const k of ['drafted', 'accepted', 'rejected', 'acceptance', 'tokens_per_pass'])
        assert.equal(typeof s.spec[k], 'number', k);
    }
  });

  test('events: the layer cells move and the request shows its KV fill during a streamed run', async () => {
    const gen = fetch(`${srv.base}/v1/completions`, {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 60, temperature: 0, ignore_eos: true, stream: true }),
    }).then((r) => r.text());
    const r = await fetch(`${srv.base}/v1/engine/events?interval_ms=50`, { headers: auth });
    const seen = new Set();
    let req = null;
    await readEvents(r, (e) => {
      const s = JSON.parse(e[e.length - 1].data);
      if (s.requests.length) {
        seen.add(s.units);
        req = s.requests[0];
      }
      return seen.size >= 3 || e.length > 400;
    });
    await gen;
    assert.ok(seen.size >= 3, `unit states seen while generating: ${[...seen].join(' ')}`);
    assert.ok([...seen].some((u) => /[rwc]/.test(u)), 'some unit is read, waiting or computing');
    assert.match(req.id, /^cmpl-/);
    assert.ok(req.kv >= req.n_prompt && req.n_ctx > 0);
  });

  test('events: the stream ends cleanly when the server stops', async () => {
    const r = await fetch(`${srv.base}/v1/engine/events?interval_ms=100`, { headers: auth });
    const reading = readEvents(r);
    await new Promise((res) => setTimeout(res, 300));
    const t0 = Date.now();
    const code = await srv.stop();
    srv = null;
    const { events, ended } = await reading;
    assert.equal(ended, true);
    assert.ok(events.length >= 2);
    assert.equal(events[events.length - 1].event, 'end');
    assert.deepEqual(code, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 5000, 'stop did not wait on the viewer');
  });
});
