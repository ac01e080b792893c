#!/usr/bin/env node
// llama.cpp as a reference no one here wrote: loads a GGUF with the peer's node-llama-cpp (prebuilt CPU
// binaries, offline), feeds a prompt given as token ids, decodes greedily for N tokens (argmax of the raw
// logits, ties to the lower id) and prints one JSON object: the tokens, and per step the top logits.
//
//   node scripts/llamacpp_ref.mjs -m MODEL.gguf -t 1,403,407,261,378 -n 64 [--top 5] [--threads 2] [--ctx 512]
//
// -m may be given several times: each model in turn, one JSON line each, in one process (loading llama.cpp
// takes ~1.5 s, more than decoding a tiny model).
//
// The package is found through $NODE_LLAMA_CPP (a directory of node-llama-cpp, or of a node_modules that
// holds it), else /work/peer/node_modules/node-llama-cpp; never from this repository's node_modules.
import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function usage(msg) {
    if (msg) process.stderr.write(`llamacpp_ref: ${msg}\n`);
    process.stderr.write("usage: node scripts/llamacpp_ref.mjs -m MODEL.gguf -t ID,ID,... -n N [--top K] [--threads T] [--ctx C]\n");
    process.exit(2);
}

function parseArgs(argv) {
    const a = { top: 5, threads: 2, ctx: 0, n: 16, tokens: null, models: [] };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i], v = argv[i + 1];
        const need = () => { if (v === undefined) usage(`${k} needs a value`); i++; return v; };
        if (k === "-m" || k === "--model") a.models.push(need());
        else if (k === "-t" || k === "--tokens") a.tokens = need().split(/[,\s]+/).filter(Boolean).map(Number);
        else if (k === "-n") a.n = Number(need());
        else if (k === "--top") a.top = Number(need());
        else if (k === "--threads") a.threads = Number(need());
        else if (k === "--ctx") a.ctx = Number(need());
        else if (k === "-h" || k === "--help") usage();
        else usage(`unknown argument ${k}`);
    }
    if (a.models.length === 0) usage("no model (-m)");
    if (!a.tokens || a.tokens.length === 0 || a.tokens.some((t) => !Number.isInteger(t) || t < 0)) usage("no prompt token ids (-t)");
    if (!Number.isInteger(a.n) || a.n < 0) usage("bad -n");
    return a;
}

// The package entry point, from the environment or the peer folder.
function findPackage() {
    const cands = [];
    if (process.env.NODE_LLAMA_CPP) {
        cands.push(process.env.NODE_LLAMA_CPP, path.join(process.env.NODE_LLAMA_CPP, "node-llama-cpp"));
    }
    cands.push("/work/peer/node_modules/node-llama-cpp");
    for (const dir of cands) {
        const pkg = path.join(dir, "package.json");
        const entry = path.join(dir, "dist", "index.js");
        if (existsSync(pkg) && existsSync(entry)) return entry;
    }
    throw new Error(`node-llama-cpp not found (set NODE_LLAMA_CPP); looked in: ${cands.join(", ")}`);
}

const args = parseArgs(process.argv.slice(2));
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(findPackage()).href);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel?.error ?? "error" });

// argmax with ties to the lower id, as llama.cpp's greedy sampler and this engine's do.
function argmax(pairs) {
    let best = pairs[0];
    for (const p of pairs) if (p[1] > best[1] || (p[1] === best[1] && p[0] < best[0])) best = p;
    return best[0];
}

// Decodes the prompt greedily with one model and prints its JSON line.
async function reference(modelPath) {
    const model = await llama.loadModel({ modelPath: path.resolve(modelPath), gpuLayers: 0 });
    const ctxSize = args.ctx > 0 ? args.ctx : Math.max(64, args.tokens.length + args.n + 8);
    const context = await model.createContext({
        contextSize: ctxSize,
        batchSize: Math.max(args.tokens.length, 1),
        sequences: 1,
        threads: { ideal: args.threads, min: args.threads },
    });
    const seq = context.getSequence();

    // Evaluates `input` and returns the raw logits after its last token, as [id, logit] pairs best first.
    async function step(input) {
        const items = input.map((t, i) => (i === input.length - 1 ? [t, { generateNext: { logits: true } }] : t));
        const out = await seq.controlledEvaluate(items);
        const last = out[out.length - 1];
        if (!last || !last.next || !last.next.logits) throw new Error("no logits returned");
        return [...last.next.logits.entries()];
    }

    const steps = [];
    const generated = [];
    let input = args.tokens;
    const t0 = performance.now();
    for (let i = 0; i < args.n; i++) {
        const pairs = await step(input);
        const tok = argmax(pairs);
        steps.push({ pos: args.tokens.length + i - 1, top: pairs.slice(0, args.top).map(([id, l]) => [id, Number(l.toFixed(6))]) });
        generated.push(tok);
        input = [tok];
    }
    const secs = (performance.now() - t0) / 1000;
    process.stdout.write(JSON.stringify({
        model: modelPath,
        engine: "llama.cpp via node-llama-cpp",
        prompt: args.tokens,
        n: args.n,
        tokens: generated,
        steps,
        seconds: Number(secs.toFixed(3)),
    }) + "\n");
    await context.dispose();
    await model.dispose();
}

for (const m of args.models) await reference(m);
await llama.dispose();
