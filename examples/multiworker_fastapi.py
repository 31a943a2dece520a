"""Several uvicorn workers (processes), one wallet: nonces, onboarding and API keys agreed through Redis.

Every worker opens its own AsyncBroker with the same ``RedisCoordinator``. The workers then take
their nonces from one counter in Redis (no "nonce too low", no transaction signed twice), and the
``ensure_ready`` each runs at startup moves money once: the first worker to hold the lease tops
the sub-account up, the others find it funded. Losing Redis answers 503 (``CoordinatorError``)
before anything is signed.

Configuration comes from the environment, so that every worker builds the same app::

    OG_PRIVATE_KEY=0x...  OG_RPC_URL=http://127.0.0.1:8545  OG_REDIS_URL=redis://127.0.0.1:6379/0 \\
    OG_PROVIDER=0x...  uvicorn --app-dir examples --factory multiworker_fastapi:create_app --workers 4

(``OG_NETWORK`` defaults to ``hardhat``, the devnet; the wallet needs a ledger.)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from og_inference_async import AsyncBroker, CoordinatorError, OGError, og
from og_inference_async.coordination import RedisCoordinator


class DepositIn(BaseModel):
    """The body of ``POST /deposit``."""

    wei: int


def create_app() -> FastAPI:
    """The app of one worker: its broker shares the wallet with the other workers through Redis."""
    key = os.environ["OG_PRIVATE_KEY"]
    provider = os.environ["OG_PROVIDER"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with RedisCoordinator(os.environ["OG_REDIS_URL"]) as coordinator:
            broker = AsyncBroker(
                key,
                network=os.environ.get("OG_NETWORK", "hardhat"),
                rpc_url=os.environ["OG_RPC_URL"],
                coordinator=coordinator,
            )
            async with broker:
                # every worker runs this; the lease makes the top-up happen once
                report = await broker.inference.ensure_ready(provider, min_balance=og("2"))
                app.state.broker = broker
                app.state.startup_actions = [action.kind for action in report.actions]
                yield

    app = FastAPI(title="0G multi-worker example", lifespan=lifespan)

    @app.exception_handler(OGError)
    async def og_error(request: Request, exc: OGError) -> JSONResponse:
        status = 503 if isinstance(exc, CoordinatorError) else 502
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status)

    @app.post("/deposit")
    async def deposit(body: DepositIn, request: Request) -> dict[str, str | int]:
        broker: AsyncBroker = request.app.state.broker
        receipt = await broker.ledger.deposit_fund(body.wei)
        return {"tx_hash": receipt.tx_hash, "worker": os.getpid()}

    @app.get("/worker")
    async def worker(request: Request) -> dict[str, object]:
        return {"worker": os.getpid(), "startup_actions": request.app.state.startup_actions}

    return app
