// Load generator for bench_vs_ts.py: chats through the official TS SDK (0.9.0, ethers 6) at a fixed concurrency.
//
// Each chat is what the TS SDK's README asks of a user: `getRequestHeaders(provider)`, POST the chat to the
// provider's endpoint with `fetch`, then `processResponse(provider, chatID, usageJSON)`, which counts the fee
// and, the service being verifiable, fetches the response signature and recovers its signer. A chat counts as
// a success when the provider answered 200 and `processResponse` returned `true`.
//
// Run with NODE_PATH pointing at the devnet's npm cache (the folder holding node_modules of the pinned TS SDK).
// Input: env OG_TS_BENCH = JSON {rpc_url, ledger, inference, provider, key, n, warmup, concurrency, output}.
// The wallet must already have a ledger, a funded sub-account with the provider and an acknowledgement.
// Output: a JSON report written to `output` (the TS SDK logs to stdout, so stdout carries no results), and
// `OGMARK <phase>` lines on stderr as the phases start (the parent reads its own CPU time at each).
'use strict';

const fs = require('fs');
const { ethers } = require('ethers');
const sdk = require('@0gfoundation/0g-compute-ts-sdk');

const cfg = JSON.parse(process.env.OG_TS_BENCH);
const GAS_PRICE = 20_000_000_000; // a given gas price skips the SDK's 1 s sleep per transaction
const MESSAGES = [{ role: 'user', content: 'hi there' }];

function mark(phase) {
  process.stderr.write(`OGMARK ${phase}\n`);
}

async function oneChat(broker, meta, failures) {
  const headers = await broker.inference.getRequestHeaders(cfg.provider);
  const res = await fetch(`${meta.endpoint}/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ model: meta.model, messages: MESSAGES }),
  });
  const text = await res.text();
  if (res.status !== 200) {
    const key = `HTTP ${res.status}`;
    failures[key] = (failures[key] || 0) + 1;
    return false;
  }
  const completion = JSON.parse(text);
  const chatID = res.headers.get('ZG-Res-Key') || completion.id;
  const valid = await broker.inference.processResponse(cfg.provider, chatID, JSON.stringify(completion.usage));
  if (valid !== true) {
    const key = `processResponse ${valid}`;
    failures[key] = (failures[key] || 0) + 1;
    return false;
  }
  return true;
}

// Run `count` chats from `concurrency` workers; returns {ok, errors, seconds, rps, p50_ms, p99_ms}.
async function run(broker, meta, count, concurrency) {
  const failures = {};
  const latencies = [];
  let next = 0;
  let ok = 0;
  async function worker() {
    while (next < count) {
      next += 1;
      const t0 = performance.now();
      try {
        if (await oneChat(broker, meta, failures)) {
          ok += 1;
          latencies.push(performance.now() - t0);
        }
      } catch (e) {
        const key = (e && e.constructor && e.constructor.name) || 'Error';
        failures[key] = (failures[key] || 0) + 1;
      }
    }
  }
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pick = (q) => (latencies.length ? +latencies[Math.min(Math.floor(latencies.length * q), latencies.length - 1)].toFixed(3) : null);
  return { ok, errors: failures, seconds: +seconds.toFixed(3), rps: +(ok / seconds).toFixed(1), p50_ms: pick(0.5), p99_ms: pick(0.99) };
}

async function main() {
  const rpc = new ethers.JsonRpcProvider(cfg.rpc_url, undefined, { cacheTimeout: -1 });
  const wallet = new ethers.Wallet(cfg.key, rpc);
  const broker = await sdk.createZGComputeNetworkBroker(wallet, cfg.ledger, cfg.inference, undefined, GAS_PRICE);
  const meta = await broker.inference.getServiceMetadata(cfg.provider);
  mark('warmup');
  const warmup = await run(broker, meta, cfg.warmup, cfg.concurrency);
  mark('load');
  const cpu = process.cpuUsage();
  const load = await run(broker, meta, cfg.n, cfg.concurrency);
  const used = process.cpuUsage(cpu);
  mark('end');
  load.cpu_s = +((used.user + used.system) / 1e6).toFixed(3);
  return { user: wallet.address, phases: { warmup, load } };
}

main()
  .then((report) => {
    fs.writeFileSync(cfg.output, JSON.stringify(report));
    process.exit(0);
  })
  .catch((e) => {
    fs.writeFileSync(cfg.output, JSON.stringify({ fatal: String((e && e.stack) || e) }));
    process.exit(1);
  });
