// Makes the official TS SDK (0.9.0) produce an ephemeral session token and an API key for a user whose
// sub-account was opened beforehand (by our SDK). Run by tests/conformance/test_tokens.py.
// Input: env OG_TOKENS = JSON {rpc_url, ledger, inference, provider, key, output}. Output: JSON file.
'use strict';

const fs = require('fs');
const { ethers } = require('ethers');
const sdk = require('@0gfoundation/0g-compute-ts-sdk');

const cfg = JSON.parse(process.env.OG_TOKENS);

async function main() {
  const rpc = new ethers.JsonRpcProvider(cfg.rpc_url, undefined, { cacheTimeout: -1 });
  const wallet = new ethers.Wallet(cfg.key, rpc);
  const broker = await sdk.createZGComputeNetworkBroker(wallet, cfg.ledger, cfg.inference, undefined, 20e9);
  // The sub-account already holds more than the SDK's inline auto-funding target, so this sends nothing.
  const headers = await broker.inference.getRequestHeaders(cfg.provider);
  const key = await broker.inference.requestProcessor.createApiKey(cfg.provider, { tokenId: 7, expiresIn: 3600000 });
  fs.writeFileSync(cfg.output, JSON.stringify({ authorization: headers.Authorization, apiKey: key.rawToken, tokenId: key.tokenId }));
}

main().then(() => process.exit(0)).catch((e) => {
  fs.writeFileSync(cfg.output, JSON.stringify({ fatal: String(e && e.stack || e) }));
  process.exit(1);
});
