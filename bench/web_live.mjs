// Decode tokens/s of the streamed teacher with the web page's live view open against closed (issue 17: at most
// 2 % apart). Starts `aerollm serve` on the bundled teacher under --mem 16M, then alternates greedy streamed
// completions with no viewer and with a viewer: the page itself in headless chromium when playwright-core and
// /usr/bin/chromium are there (its live view on), else a plain reader of /v1/engine/events at the page's rate.
// Usage: node bench/web_live.mjs [--rounds 5] [--tokens 200] [--mem 16M] [--interval 250] [--sse]
// Decode rate per run: (generated tokens - 1) / (time of the last token - time of the first), client side.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const ROUNDS = Number(arg('--rounds', 5));
const TOKENS = Number(arg('--tokens', 200));
const MEM = arg('--mem', '16M');
const INTERVAL = Number(arg('--interval', 250));
const BIN = process.env.AEROLLM || 'build/aerollm';
const MODEL = 'models/aero-teacher-34M-Q8_0.gguf';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

async function start() {
  const proc = spawn(BIN, ['serve', '-m', MODEL, '--mem', MEM, '-np', '1', '--port', '0', '--quiet'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/[^:\s]+:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    proc.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  for (;;) {
    const r = await fetch(base + '/health').catch(() => null);
    if (r && r.status === 200) break;
    await new Promise((r2) => setTimeout(r2, 50));
  }
  return { proc, base };
}

// One greedy streamed completion; its decode rate in tokens/s.
async function decodeRate(base) {
  const r = await fetch(base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: TOKENS, temperature: 0, ignore_eos: true,
      stream: true, stream_options: { include_usage: true } }),
  });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let first = 0;
  let last = 0;
  let n = 0;
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!line.startsWith('data: {')) continue;
      const j = JSON.parse(line.slice(6));
      if (j.choices && j.choices[0] && j.choices[0].text) {
        const now = performance.now();
        if (!first) first = now;
        last = now;
      }
      if (j.usage) n = j.usage.completion_tokens;
    }
  }
  return ((n - 1) * 1000) / (last - first);
}

// A viewer: the page in chromium (live view on), or an SSE reader. Returns a close function.
async function openViewer(base, useBrowser) {
  if (useBrowser) {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const page = await browser.newPage();
    await page.goto(base + '/');
    await page.waitForFunction(() => document.getElementById('live-status').textContent === 'connected');
    return async () => browser.close();
  }
  const ctrl = new AbortController();
  const r = await fetch(`${base}/v1/engine/events?interval_ms=${INTERVAL}`, { signal: ctrl.signal });
  const reader = r.body.getReader();
  (async () => {
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch {
      /* aborted */
    }
  })();
  return async () => ctrl.abort();
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

let useBrowser = !process.argv.includes('--sse') && existsSync(CHROMIUM);
if (useBrowser) {
  try {
    await import('playwright-core');
  } catch {
    useBrowser = false;
  }
}
const { proc, base } = await start();
await decodeRate(base); // warm-up: page cache, first-pass effects
const closed = [];
const open = [];
for (let i = 0; i < ROUNDS; i++) {
  closed.push(await decodeRate(base));
  const close = await openViewer(base, useBrowser);
  open.push(await decodeRate(base));
  await close();
}
proc.kill('SIGTERM');
const c = median(closed);
const o = median(open);
console.log(`viewer: ${useBrowser ? 'the page in headless chromium' : `SSE reader every ${INTERVAL} ms`}; ` +
  `teacher --mem ${MEM}, ${TOKENS} tokens, ${ROUNDS} rounds`);
console.log(`closed: median ${c.toFixed(2)} tok/s  [${closed.map((x) => x.toFixed(1)).join(' ')}]`);
console.log(`open:   median ${o.toFixed(2)} tok/s  [${open.map((x) => x.toFixed(1)).join(' ')}]`);
console.log(`open vs closed: ${(((o - c) / c) * 100).toFixed(2)} %`);
