"""Conformance: the official TS SDK 0.9.0 (with ethers 6) drives the devnet provider end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from og_inference_async.abi import inference_abi
from og_inference_devnet import Devnet
from og_inference_devnet.provider import start_provider

pytestmark = [pytest.mark.anyio, pytest.mark.conformance]

SCRIPT = Path(__file__).with_name("official_client.js")
IN_PRICE, OUT_PRICE = 1_000_000_000_000, 2_000_000_000_000


async def _account(dn: Devnet, user: str, provider: str) -> tuple[Any, ...]:
    fn = inference_abi().fn("getAccount")
    (acc,) = fn.decode_raw(await dn.call(dn.inference, fn.encode(user, provider)))
    return tuple(acc)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
async def test_official_ts_sdk_against_devnet_provider(devnet: Devnet, tmp_path: Path) -> None:
    """The TS SDK funds, acknowledges, chats, verifies and is refused exactly as a real provider would."""
    snapshot = await devnet.snapshot()
    try:
        async with anyio.create_task_group() as tg:
            provider = await start_provider(
                devnet,
                tg,
                service_type="chatbot",
                model="conformance/echo",
                input_price=IN_PRICE,
                output_price=OUT_PRICE,
                account_index=28,
                settle_interval=None,
            )
            other = await start_provider(
                devnet,
                tg,
                service_type="chatbot",
                model="conformance/other",
                input_price=IN_PRICE,
                output_price=OUT_PRICE,
                account_index=29,
                settle_interval=None,
            )
            output = tmp_path / "report.json"
            config = {
                "rpc_url": devnet.rpc_url,
                "ledger": devnet.ledger,
                "inference": devnet.inference,
                "lock_time": devnet.lock_time,
                "provider": provider.address,
                "other_provider": other.address,
                "main_key": devnet.accounts[2].private_key,
                "unack_key": devnet.accounts[3].private_key,
                "poor_key": devnet.accounts[4].private_key,
                "output": str(output),
            }
            env = {
                **os.environ,
                "NODE_PATH": str(Path(devnet.artifacts.cache_dir) / "node_modules"),
                "OG_CONFORMANCE": json.dumps(config),
            }
            with anyio.fail_after(90):
                proc = await anyio.run_process(["node", str(SCRIPT)], env=env, check=False)
            report = json.loads(output.read_text()) if output.exists() else {}
            assert proc.returncode == 0, (report.get("fatal"), proc.stderr.decode()[-2000:])

            steps = report["steps"]
            assert steps["metadata"] == {"endpoint": provider.url + "/v1/proxy", "model": "conformance/echo"}
            assert steps["chat"]["status"] == 200
            assert steps["chat"]["bodyId"] == "chatcmpl-" + steps["chat"]["chatID"]
            assert steps["chat"]["content"] == "Echo: hello from the official client"
            assert steps["processResponse"] is True
            assert steps["models"] == {"defaultModel": "conformance/echo", "ids": ["conformance/echo"]}
            assert steps["verifyService"] == {"success": True, "signerAllMatch": True, "composePassed": True}
            assert steps["apiKeyBeforeRevoke"] == 200 and steps["afterRevokeAll"] == 200

            neg = report["negatives"]
            assert neg["tampered"] == {"status": 401, "code": "invalid_signature"}
            assert neg["otherProvider"] == {"status": 403, "code": "wrong_provider"}
            assert neg["expired"] == {"status": 401, "code": "token_expired"}
            assert neg["revoked"] == {"status": 401, "code": "token_revoked"}
            assert neg["revokeAll"] == {"status": 401, "code": "generation_mismatch"}
            assert neg["unacknowledged"] == {"status": 403, "code": "not_acknowledged"}
            assert (
                neg["insufficient"]["status"] == 402 and neg["insufficient"]["code"] == "insufficient_balance"
            )
            assert int(neg["insufficient"]["available"]) == 10**18

            # exactly the successful requests were billed, nothing for the refused ones
            fee = sum(
                u["prompt_tokens"] * IN_PRICE + u["completion_tokens"] * OUT_PRICE
                for u in report["successUsages"]
            )
            assert len(report["successUsages"]) == 3
            assert provider.unsettled_fee(report["user"]) == fee
            assert provider.unsettled_fee(report["unackUser"]) == 0
            assert provider.unsettled_fee(report["poorUser"]) == 0
            assert other.total_billed == 0

            before = await _account(devnet, report["user"], provider.address)
            (result,) = await provider.settle_now()
            after = await _account(devnet, report["user"], provider.address)
            assert result.status == "SUCCESS" and result.settled == fee
            assert before[3] - after[3] == fee
            tg.cancel_scope.cancel()
    finally:
        await devnet.revert(snapshot)
