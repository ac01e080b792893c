// Server throughput under continuous batching: aggregate generated tok/s with 1, 4 and 8 concurrent streams
// against a model that is streamed from disk (--mem well under its size). Every pass over the weights costs
// about the same disk read whatever the batch, so N streams should approach N times one stream's rate.
// Prints the disk floor (O_DIRECT dd on the model file) and per-pass figures from /metrics.
// Env: AEROLLM (binary), MODEL (default: synthesize a llama-1b-shape model of TYPE (default Q8_0), 8 layers,
//      in $TMPDIR),
//      MEM (default 40% of the model file: nearly every layer streamed; 0: no budget, all resident), TOKENS per stream (default 32), LEVELS (default 1,4,8), THREADS (-t).
// Run: node bench/server_bench.mjs
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.AEROLLM || './aerollm';
const TOKENS = Number(process.env.TOKENS || 32);
const LEVELS = (process.env.LEVELS || '1,4,8').split(',').map(Number);
const TOKSRC = '../shared/data/models/stories260K.gguf';
const TYPE = process.env.TYPE || 'Q8_0';

function synthModel() {
  const file = path.join(process.env.TMPDIR || os.tmpdir(), `aerollm-bench-server-llama1b-8l-${TYPE.toLowerCase()}.gguf`);
  if (existsSync(file)) return file;
  if (!existsSync(TOKSRC)) { console.log('skipped: ../shared/data not found (tokenizer for the synthetic model)'); process.exit(0); }
  console.log(`synthesizing ${file} ...`);
  const r = spawnSync(BIN, ['synth', '--preset', 'llama-1b', '--layers', '8', '--type', TYPE, '--tokenizer-from', TOKSRC,
    '--quiet', '-o', file], { stdio: 'inherit' });
  if (r.status !== 0) { console.error('synth failed'); process.exit(1); }
  return file;
}

// Disk bandwidth the way the engine reads: O_DIRECT, 8 MiB requests (the floor every pass is held against).
function diskBandwidth(file) {
  const r = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=8M', 'iflag=direct'], { encoding: 'utf8' });
  const m = (r.stderr || '').match(/([\d.,]+) s, ([\d.,]+) ([GMk]?B)\/s/);
  if (!m) return null;
  const v = Number(m[2].replace(',', '.'));
  return v * ({ GB: 1e9, MB: 1e6, kB: 1e3, B: 1 }[m[3]]);
}

async function metrics(base) {
  const txt = await (await fetch(`${base}/metrics`)).text();
  const out = {};
  for (const line of txt.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

async function stream(base, prompt, maxTokens) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, { method: 'POST',
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }) });
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft = null, usage = null, buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body) {
    buf += dec.decode(part, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) usage = j.usage;
      else if (ttft === null && j.choices[0].text) ttft = performance.now() - t0;
    }
  }
  return { ttft, tokens: usage.completion_tokens };
}

const model = process.env.MODEL || synthModel();
const size = statSync(model).size;
const MEM = process.env.MEM || `${Math.ceil(size * 0.4 / 1048576)}M`;
const bw = diskBandwidth(model);
const args = ['serve', '-m', model, ...(MEM === '0' ? [] : ['--mem', MEM]), '--port', '0', '-np', String(Math.max(...LEVELS)), '-c', '256', '--quiet'];
if (process.env.THREADS) args.push('-t', process.env.THREADS);
const srv = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
let exited = false;
srv.on('exit', () => { exited = true; });
process.on('exit', () => { if (!exited) srv.kill('SIGKILL'); }); // never leave a server behind
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
const port = await new Promise((resolve, reject) => {
  srv.stderr.on('data', (d) => {
    log += d;
    const m = log.match(/listening on http:\/\/[^:\s]+:(\d+)/);
    if (m) resolve(Number(m[1]));
  });
  srv.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
});
const base = `http://127.0.0.1:${port}`;
while ((await fetch(`${base}/health`).catch(() => ({ status: 0 }))).status !== 200) {
  if (exited) { console.error(`server exited while loading:\n${log}`); process.exit(1); }
  await new Promise((r) => setTimeout(r, 100));
}
await stream(base, 'Once upon a time', 4); // warm-up: first pass, page tables, thread pool

console.log(`model ${path.basename(model)}: ${(size / 1e6).toFixed(0)} MB, --mem ${MEM}; disk (O_DIRECT, 8 MiB) ` +
  `${bw ? (bw / 1e9).toFixed(2) + ' GB/s' : 'unknown'}; ${TOKENS} tokens per stream`);
console.log('streams | aggregate tok/s | per-stream tok/s | passes | MB/pass | s/pass | floor s/pass | IO wait s | in forward | mean TTFT s');
const rates = {};
const prompts = ['Once upon a time', 'The dog', 'Lily and Tom', 'One day, a bird', 'The sun was', 'A little boy', 'In the park', 'Mom said'];
for (const n of LEVELS) {
  const m0 = await metrics(base);
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: n }, (_, i) => stream(base, prompts[i % prompts.length], TOKENS)));
  const secs = (performance.now() - t0) / 1000;
  const m1 = await metrics(base);
  const tokens = res.reduce((a, r) => a + r.tokens, 0);
  const passes = m1.aerollm_stream_passes_total - m0.aerollm_stream_passes_total || m1.aerollm_decode_steps_total - m0.aerollm_decode_steps_total;
  const bytes = m1.aerollm_stream_bytes_total - m0.aerollm_stream_bytes_total;
  const wait = m1.aerollm_stream_io_wait_seconds_total - m0.aerollm_stream_io_wait_seconds_total;
  const fwd = m1.aerollm_decode_seconds_total - m0.aerollm_decode_seconds_total; // the rest is server overhead
  const perPass = bytes / Math.max(passes, 1);
  rates[n] = tokens / secs;
  console.log(`${String(n).padStart(7)} | ${rates[n].toFixed(2).padStart(15)} | ${(rates[n] / n).toFixed(2).padStart(16)} | ` +
    `${String(passes).padStart(6)} | ${(perPass / 1e6).toFixed(1).padStart(7)} | ${(secs / Math.max(passes, 1)).toFixed(3).padStart(6)} | ` +
    `${bw ? (perPass / bw).toFixed(3).padStart(12) : '           ?'} | ${wait.toFixed(2).padStart(9)} | ` +
    `${(100 * fwd / secs).toFixed(0).padStart(9)}% | ` +
    `${(res.reduce((a, r) => a + r.ttft, 0) / n / 1000).toFixed(2).padStart(11)}`);
}
const hi = Math.max(...LEVELS), lo = Math.min(...LEVELS);
const speedup = rates[hi] / rates[lo];
console.log(`speedup ${hi} streams vs ${lo}: ${speedup.toFixed(2)}x (goal >= 4x at 8 streams)`);
srv.kill('SIGTERM');
await new Promise((r) => srv.on('exit', r));
