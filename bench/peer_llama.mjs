#!/usr/bin/env node
// llama.cpp's side of bench/peer.sh: loads a GGUF with node-llama-cpp (prebuilt CPU libraries, offline, no
// GPU), prefills the same synthetic prompt `aerollm bench` uses (token i = (i * 7919 + 13) mod n_vocab) in one
// batch, then decodes greedily one token at a time, and prints one JSON line:
//   {"load_s", "prefill_tokens", "prefill_s", "prefill_tok_s", "decode_tokens", "decode_s_per_token", "decode_tok_s"}
//
//   node bench/peer_llama.mjs -m MODEL.gguf [-p 128] [-n 32] [--threads 2] [--no-mmap]
//
// The package is found through $NODE_LLAMA_CPP (a directory of node-llama-cpp, or of a node_modules holding it),
// else /work/peer/node_modules/node-llama-cpp. Its threads spin while waiting: run it only on a quiet machine.
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function usage(msg) {
    if (msg) process.stderr.write(`peer_llama: ${msg}\n`);
    process.stderr.write("usage: node bench/peer_llama.mjs -m MODEL.gguf [-p N_PROMPT] [-n N_GEN] [--threads T] [--no-mmap]\n");
    process.exit(2);
}

function parseArgs(argv) {
    const a = { model: null, p: 128, n: 32, threads: 2, mmap: true };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i], v = argv[i + 1];
        const need = () => { if (v === undefined) usage(`${k} needs a value`); i++; return v; };
        if (k === "-m") a.model = need();
        else if (k === "-p") a.p = Number(need());
        else if (k === "-n") a.n = Number(need());
        else if (k === "--threads") a.threads = Number(need());
        else if (k === "--no-mmap") a.mmap = false;
        else usage(`unknown argument ${k}`);
    }
    if (!a.model) usage("no model (-m)");
    if (!(a.p >= 1) || !(a.n >= 1) || !(a.threads >= 1)) usage("-p, -n and --threads must be positive");
    return a;
}

// The package entry point, from the environment or the peer folder.
function findPackage() {
    const cands = [];
    if (process.env.NODE_LLAMA_CPP) cands.push(process.env.NODE_LLAMA_CPP, path.join(process.env.NODE_LLAMA_CPP, "node-llama-cpp"));
    cands.push("/work/peer/node_modules/node-llama-cpp");
    for (const dir of cands) {
        const entry = path.join(dir, "dist", "index.js");
        if (existsSync(path.join(dir, "package.json")) && existsSync(entry)) return entry;
    }
    return null;
}

const args = parseArgs(process.argv.slice(2));
const entry = findPackage();
if (!entry) {
    process.stdout.write(JSON.stringify({ skipped: "node-llama-cpp not found (set NODE_LLAMA_CPP)" }) + "\n");
    process.exit(0);
}
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel?.error ?? "error" });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath: path.resolve(args.model), gpuLayers: 0, useMmap: args.mmap });
const context = await model.createContext({
    contextSize: args.p + args.n + 16,
    batchSize: args.p,
    sequences: 1,
    threads: { ideal: args.threads, min: args.threads },
});
const loadS = (performance.now() - t0) / 1000;
const seq = context.getSequence();
// the vocabulary size as aerollm sees it: the tokenizer's token list
const vocab = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length;
if (!(vocab > 0)) throw new Error("no tokenizer.ggml.tokens in the model");
const prompt = [];
for (let i = 0; i < args.p; i++) prompt.push((i * 7919 + 13) % vocab);

// The whole prompt in one batch; the last token asks for the next one (greedy), as aerollm's prefill does.
const greedy = { token: true, options: { temperature: 0 } };
const items = prompt.map((t, i) => (i === prompt.length - 1 ? [t, { generateNext: greedy }] : t));
let t1 = performance.now();
let out = await seq.controlledEvaluate(items);
const prefillS = (performance.now() - t1) / 1000;
let next = out[out.length - 1]?.next?.token;
if (next === undefined) throw new Error("no token after the prompt");

// One token per evaluation, the first one not counted (warm-up), as aerollm bench does.
out = await seq.controlledEvaluate([[next, { generateNext: greedy }]]);
next = out[0].next.token;
t1 = performance.now();
for (let i = 0; i < args.n; i++) {
    out = await seq.controlledEvaluate([[next, { generateNext: greedy }]]);
    next = out[0].next.token;
}
const decodeS = (performance.now() - t1) / 1000 / args.n;
process.stdout.write(JSON.stringify({
    engine: "llama.cpp via node-llama-cpp",
    model: args.model,
    threads: args.threads,
    mmap: args.mmap,
    load_s: Number(loadS.toFixed(3)),
    prefill_tokens: args.p,
    prefill_s: Number(prefillS.toFixed(6)),
    prefill_tok_s: Number((args.p / prefillS).toFixed(3)),
    decode_tokens: args.n,
    decode_s_per_token: Number(decodeS.toFixed(6)),
    decode_tok_s: Number((1 / decodeS).toFixed(3)),
}) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
