"""The examples run on the devnet."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from .example_loader import load_example

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_quickstart_runs_the_seed_flow(devnet: Any, providers: list[Any]) -> None:
    """The quickstart's whole flow: list, fund, acknowledge, transfer, chat, verify, settle, refund."""
    chatbot = providers[0]
    result = await load_example("quickstart").run(devnet, settle=chatbot.settle_now)
    assert result["services"] == 4
    assert (result["ack"], result["ack_again"]) == ("created_account", "already_acknowledged")
    assert result["answer"].startswith("Echo:")
    assert result["verification"] == "bound"
    assert result["fee"] > 0 and result["settled"] == result["fee"] == result["balance_drop"]
    assert result["pending_refund"] == 3 * 10**18 - result["fee"]


async def test_fastapi_app_proxies_chat_under_uvicorn(devnet: Any, chatbot: Any) -> None:
    """The FastAPI example serves /chat under a real uvicorn with the broker in its lifespan."""
    import socket

    import httpx
    import uvicorn

    from og_inference_async import AsyncBroker, og

    module = load_example("fastapi_app")
    user = devnet.accounts[12]
    async with AsyncBroker(user.private_key, network=devnet.network) as setup:
        await setup.ledger.add_ledger(og("10"))
    app = module.create_app(user.private_key, network=devnet.network, provider=chatbot.address)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes no startup event
                await anyio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            replies = []

            async def ask(i: int) -> None:
                r = await client.post("/chat", json={"message": f"hello {i}"})
                replies.append(r)

            async with anyio.create_task_group() as inner:
                for i in range(20):
                    inner.start_soon(ask, i)
            assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
            body = replies[0].json()
            assert body["answer"].startswith("Echo: hello")
            assert int(body["fee_wei"]) > 0 and body["chat_id"]
            balance = (await client.get("/balance")).json()
            assert int(balance["provider_spendable"]) >= 2 * 10**18
        server.should_exit = True
