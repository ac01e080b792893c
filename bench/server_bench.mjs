// Server throughput under continuous batching: aggregate generated tok/s with 1, 4 and 8 concurrent streams
// against a model that is streamed from disk (--mem well under its size). Every pass over the weights costs
// about the same disk read whatever the batch, so N streams should approach N times one stream's rate.
// Prints the disk floor (O_DIRECT dd on the model file) and per-pass figures from /metrics.
// With DRAFT (a draft model's path, or "ngram"), the same levels run twice, without and with `serve --draft`
// (every sequence drafts, one pass verifies every draft), and the script prints the speculative/plain ratio of
// the aggregate rate at each level and the drafts' acceptance (issue 16: 8 speculative streams >= 1.5x 8 plain
// ones on the streamed teacher).
// Env: AEROLLM (binary), MODEL (default: synthesize a llama-1b-shape model of TYPE (default Q8_0), 8 layers,
//      in $TMPDIR),
//      MEM (default 40% of the model file: nearly every layer streamed; 0: no budget, all resident), TOKENS per stream (default 32), LEVELS (default 1,4,8), THREADS (-t),
//      DRAFT (draft model, ngram, or head:FILE for a draft head), DRAFT_ARGS (more serve flags for the speculative
//      run, e.g. "--draft-tree 16"),
//      CTX (-c, default 256: the KV cache of every sequence is counted inside --mem), SPEC_MEM (the speculative
//      run's --mem, default MEM: give it what the drafter's state takes on top, so both runs stream alike).
// Run: node bench/server_bench.mjs
// Issue 16's benchmark (the teacher's weights get 16 MiB of --mem, less than half their size; the rest of --mem
// is the 8 sequences' KV cache, 20 MiB at -c 160, and the drafter's 6.6 MiB):
//   MODEL=models/aero-teacher-34M-Q8_0.gguf MEM=43M CTX=160 DRAFT=models/aero-drafter-3M-F16.gguf LEVELS=1,8 TOKENS=128
//   node bench/server_bench.mjs
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
const DRAFT = process.env.DRAFT || '';
const prompts = ['Once upon a time', 'The dog', 'Lily and Tom', 'One day, a bird', 'The sun was', 'A little boy', 'In the park', 'Mom said'];
let current = null; // the server running now, killed if the script is interrupted
process.on('exit', () => { if (current && !current.exited) current.proc.kill('SIGKILL'); }); // never leave a server behind
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// Starts a server with extra flags and waits until it serves.
async function startServer(extra) {
  // SPEC_MEM: the speculative run's --mem (a draft head's per-sequence state needs more than a draft model's)
  const mem = extra.length && process.env.SPEC_MEM ? process.env.SPEC_MEM : MEM;
  const args = ['serve', '-m', model, ...(mem === '0' ? [] : ['--mem', mem]), '--port', '0', '-np', String(Math.max(...LEVELS)), '-c', process.env.CTX || '256', '--quiet', ...extra];
  if (process.env.THREADS) args.push('-t', process.env.THREADS);
  const srv = { proc: spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] }), exited: false };
  current = srv;
  let log = '';
  srv.proc.on('exit', () => { srv.exited = true; });
  const port = await new Promise((resolve, reject) => {
    srv.proc.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/listening on http:\/\/[^:\s]+:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    srv.proc.on('exit', (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
  srv.base = `http://127.0.0.1:${port}`;
  while ((await fetch(`${srv.base}/health`).catch(() => ({ status: 0 }))).status !== 200) {
    if (srv.exited) { console.error(`server exited while loading:\n${log}`); process.exit(1); }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stream(srv.base, 'Once upon a time', 4); // warm-up: first pass, page tables, thread pool
  return srv;
}

// Runs every level on a fresh server with the given flags; returns the aggregate rate per level.
async function runLevels(label, extra) {
  const srv = await startServer(extra);
  const base = srv.base;
  console.log(`\n${label}`);
  console.log('streams | aggregate tok/s | per-stream tok/s | passes | MB/pass | s/pass | floor s/pass | IO wait s | in forward | mean TTFT s | drafted | accepted');
  const rates = {};
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
    const fwd = m1.aerollm_decode_seconds_total - m0.aerollm_decode_seconds_total; // the rest is server overhead (and drafting)
    const drafted = m1.aerollm_draft_tokens_total - m0.aerollm_draft_tokens_total;
    const accepted = m1.aerollm_draft_accepted_total - m0.aerollm_draft_accepted_total;
    const perPass = bytes / Math.max(passes, 1);
    rates[n] = tokens / secs;
    console.log(`${String(n).padStart(7)} | ${rates[n].toFixed(2).padStart(15)} | ${(rates[n] / n).toFixed(2).padStart(16)} | ` +
      `${String(passes).padStart(6)} | ${(perPass / 1e6).toFixed(1).padStart(7)} | ${(secs / Math.max(passes, 1)).toFixed(3).padStart(6)} | ` +
      `${bw ? (perPass / bw).toFixed(3).padStart(12) : '           ?'} | ${wait.toFixed(2).padStart(9)} | ` +
      `${(100 * fwd / secs).toFixed(0).padStart(9)}% | ` +
      `${(res.reduce((a, r) => a + r.ttft, 0) / n / 1000).toFixed(2).padStart(11)} | ${String(drafted).padStart(7)} | ` +
      `${drafted ? (100 * accepted / drafted).toFixed(0) + '%' : '-'}`);
  }
  srv.proc.kill('SIGTERM');
  await new Promise((r) => (srv.exited ? r() : srv.proc.on('exit', r)));
  return rates;
}

console.log(`model ${path.basename(model)}: ${(size / 1e6).toFixed(0)} MB, --mem ${MEM}; disk (O_DIRECT, 8 MiB) ` +
  `${bw ? (bw / 1e9).toFixed(2) + ' GB/s' : 'unknown'}; ${TOKENS} tokens per stream`);
const hi = Math.max(...LEVELS), lo = Math.min(...LEVELS);
const plain = await runLevels('plain decoding', []);
console.log(`speedup ${hi} streams vs ${lo}: ${(plain[hi] / plain[lo]).toFixed(2)}x (goal >= 4x at 8 streams)`);
if (DRAFT) {
  // "head:FILE" serves with a draft head (--draft-head FILE) instead of a draft model
  const drafter = DRAFT.startsWith('head:') ? ['--draft-head', DRAFT.slice(5)] : ['--draft', DRAFT];
  const extra = [...drafter, ...(process.env.DRAFT_ARGS ? process.env.DRAFT_ARGS.split(/\s+/).filter(Boolean) : [])];
  const spec = await runLevels(`speculative: ${extra.join(' ')}`, extra);
  for (const n of LEVELS)
    console.log(`${n} streams: speculative ${spec[n].toFixed(2)} tok/s vs plain ${plain[n].toFixed(2)}: ${(spec[n] / plain[n]).toFixed(2)}x` +
      (n === 8 ? ' (goal >= 1.5x at 8 streams on the streamed teacher)' : ''));
}
