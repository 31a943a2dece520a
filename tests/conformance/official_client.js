// Drives the devnet provider with the official TS SDK (@0gfoundation/0g-compute-ts-sdk 0.9.0 + ethers 6).
//
// Run by tests/conformance/test_official_client.py with NODE_PATH pointing at the devnet's npm cache.
// Input: env OG_CONFORMANCE = JSON {rpc_url, ledger, inference, lock_time, provider, other_provider,
// main_key, unack_key, poor_key, output}. Output: a JSON report written to `output` (the SDK prints
// to stdout, so stdout is not used for results).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { ethers } = require('ethers');
const sdk = require('@0gfoundation/0g-compute-ts-sdk');

const cfg = JSON.parse(process.env.OG_CONFORMANCE);
const GAS_PRICE = 20_000_000_000; // passing a gas price skips the SDK's 1 s sleep per transaction
const report = { steps: {}, negatives: {} };

function rpcProvider() {
  // cacheTimeout -1: back-to-back transactions must not reuse a cached nonce
  return new ethers.JsonRpcProvider(cfg.rpc_url, undefined, { cacheTimeout: -1 });
}

async function brokerFor(key) {
  const wallet = new ethers.Wallet(key, rpcProvider());
  const broker = await sdk.createZGComputeNetworkBroker(wallet, cfg.ledger, cfg.inference, undefined, GAS_PRICE);
  return { wallet, broker };
}

async function chat(endpoint, model, headers, content) {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content }] });
  const res = await fetch(`${endpoint}/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { status: res.status, json, chatID: res.headers.get('ZG-Res-Key') };
}

function errorCode(r) {
  return r.json && r.json.error ? r.json.error.code : null;
}

function bearer(rawToken) {
  return { Authorization: `Bearer ${rawToken}` };
}

async function main() {
  const P = cfg.provider;
  const P2 = cfg.other_provider;

  // ---- the happy path -------------------------------------------------------------------------
  const { wallet, broker } = await brokerFor(cfg.main_key);
  report.user = wallet.address;
  await broker.ledger.addLedger(10, GAS_PRICE);
  await broker.inference.acknowledgeProviderSigner(P, GAS_PRICE);
  await broker.ledger.transferFund(P, 'inference', 2n * 10n ** 18n, GAS_PRICE);
  const meta = await broker.inference.getServiceMetadata(P);
  report.steps.metadata = meta;
  const headers = await broker.inference.getRequestHeaders(P);
  const first = await chat(meta.endpoint, meta.model, headers, 'hello from the official client');
  report.steps.chat = { status: first.status, usage: first.json && first.json.usage, chatID: first.chatID,
    bodyId: first.json && first.json.id, content: first.json && first.json.choices[0].message.content };
  report.steps.processResponse = await broker.inference.processResponse(
    P, first.chatID || first.json.id, JSON.stringify(first.json.usage));
  const models = await broker.inference.getProviderModels(P);
  report.steps.models = { defaultModel: models.defaultModel, ids: models.models.map((m) => m.id) };
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'og-conformance-'));
  const verification = await broker.inference.verifyService(P, outDir);
  report.steps.verifyService = {
    success: verification.success,
    signerAllMatch: verification.signerVerification && verification.signerVerification.allMatch,
    composePassed: verification.composeVerification && verification.composeVerification.passed,
  };
  fs.rmSync(outDir, { recursive: true, force: true });
  report.successUsages = [first.json.usage];

  // ---- negatives with the main user ---------------------------------------------------------
  // tampered token: change one character of the signed JSON, keep the signature
  const raw = Buffer.from(headers.Authorization.slice('Bearer app-sk-'.length), 'base64').toString();
  const cut = raw.lastIndexOf('|');
  const tamperedJson = raw.slice(0, cut).replace('"nonce":"', '"nonce":"x');
  const tampered = 'app-sk-' + Buffer.from(tamperedJson + raw.slice(cut)).toString('base64');
  let r = await chat(meta.endpoint, meta.model, bearer(tampered), 'tampered');
  report.negatives.tampered = { status: r.status, code: errorCode(r) };

  // a token for another provider
  await broker.inference.acknowledgeProviderSigner(P2, GAS_PRICE);
  const otherHeaders = await broker.inference.getRequestHeaders(P2);
  r = await chat(meta.endpoint, meta.model, otherHeaders, 'wrong provider');
  report.negatives.otherProvider = { status: r.status, code: errorCode(r) };

  // an expired API key
  const shortKey = await broker.inference.requestProcessor.createApiKey(P, { expiresIn: 1, tokenId: 5 });
  await new Promise((res) => setTimeout(res, 20));
  r = await chat(meta.endpoint, meta.model, bearer(shortKey.rawToken), 'expired');
  report.negatives.expired = { status: r.status, code: errorCode(r) };

  // a revoked API key: works, then revoked on chain, then refused
  const key = await broker.inference.requestProcessor.createApiKey(P, { tokenId: 3 });
  r = await chat(meta.endpoint, meta.model, bearer(key.rawToken), 'api key works');
  report.steps.apiKeyBeforeRevoke = r.status;
  if (r.status === 200) report.successUsages.push(r.json.usage);
  await broker.inference.revokeApiKey(P, 3, GAS_PRICE);
  r = await chat(meta.endpoint, meta.model, bearer(key.rawToken), 'revoked');
  report.negatives.revoked = { status: r.status, code: errorCode(r) };

  // revoke-all: the cached ephemeral header dies, a fresh one works
  await broker.inference.revokeAllTokens(P, GAS_PRICE);
  r = await chat(meta.endpoint, meta.model, headers, 'old generation');
  report.negatives.revokeAll = { status: r.status, code: errorCode(r) };
  const fresh = await broker.inference.getRequestHeaders(P);
  r = await chat(meta.endpoint, meta.model, fresh, 'new generation');
  report.steps.afterRevokeAll = r.status;
  if (r.status === 200) report.successUsages.push(r.json.usage);

  // ---- an unacknowledged user -------------------------------------------------------------
  const un = await brokerFor(cfg.unack_key);
  report.unackUser = un.wallet.address;
  await un.broker.ledger.addLedger(3, GAS_PRICE);
  await un.broker.inference.acknowledgeProviderSigner(P, GAS_PRICE);
  const unKey = await un.broker.inference.requestProcessor.createApiKey(P, { tokenId: 0 });
  // empty the sub-account (request a refund, wait out the lock time, collect), then withdraw the ack
  await un.broker.ledger.retrieveFund('inference', GAS_PRICE);
  const chainRpc = rpcProvider();
  await chainRpc.send('evm_increaseTime', [cfg.lock_time + 1]);
  await chainRpc.send('evm_mine', []);
  await un.broker.ledger.retrieveFund('inference', GAS_PRICE);
  await un.broker.inference.requestProcessor.revokeAcknowledgeProviderSigner(P, GAS_PRICE);
  r = await chat(meta.endpoint, meta.model, bearer(unKey.rawToken), 'not acknowledged');
  report.negatives.unacknowledged = { status: r.status, code: errorCode(r) };

  // ---- a user whose sub-account holds only 1 OG ----------------------------------------------
  const poor = await brokerFor(cfg.poor_key);
  report.poorUser = poor.wallet.address;
  await poor.broker.ledger.addLedger(3, GAS_PRICE);
  await poor.broker.inference.acknowledgeProviderSigner(P, GAS_PRICE); // transfers 1 OG
  const poorKey = await poor.broker.inference.requestProcessor.createApiKey(P, { tokenId: 1 });
  r = await chat(meta.endpoint, meta.model, bearer(poorKey.rawToken), 'too poor');
  report.negatives.insufficient = { status: r.status, code: errorCode(r),
    required: r.json && r.json.error && r.json.error.required,
    available: r.json && r.json.error && r.json.error.available };
}

main()
  .then(() => {
    fs.writeFileSync(cfg.output, JSON.stringify(report));
    process.exit(0);
  })
  .catch((e) => {
    report.fatal = String((e && e.stack) || e);
    fs.writeFileSync(cfg.output, JSON.stringify(report));
    process.exit(1);
  });
