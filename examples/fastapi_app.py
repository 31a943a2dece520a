"""A FastAPI backend that proxies chat to a 0G provider through one shared AsyncBroker.

The broker lives in the app's lifespan: opened once at startup (one HTTP pool, one nonce
allocator, one session-token cache for every request), closed at shutdown. Each request reuses
the cached session token; 0G errors become HTTP answers with a hint.

Run against the offline devnet (starts chain + providers, funds a user, serves on port 8000)::

    .venv/bin/python examples/fastapi_app.py

Against a real network, build the app with ``create_app(private_key, network="testnet", provider=...)``
and serve it with ``uvicorn``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from og_inference_async import (
    AsyncBroker,
    InsufficientBalanceError,
    Network,
    NotAcknowledgedError,
    OGError,
    ProviderError,
    og,
)


class ChatIn(BaseModel):
    """The request body of ``POST /chat``."""

    message: str
    max_tokens: int | None = None


class ChatOut(BaseModel):
    """The answer of ``POST /chat``: the text plus what 0G reports about it."""

    answer: str
    chat_id: str | None
    fee_wei: str
    verification: str


def get_broker(request: Request) -> AsyncBroker:
    """FastAPI dependency: the app's shared broker."""
    broker: AsyncBroker = request.app.state.broker
    return broker


def create_app(private_key: str, *, network: str | int | Network, provider: str) -> FastAPI:
    """Build the app; the broker opens in the lifespan and ``provider`` is made ready at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncBroker(private_key, network=network) as broker:
            await broker.inference.ensure_ready(provider, min_balance=og("2"))
            app.state.broker = broker
            yield

    app = FastAPI(title="0G chat proxy", lifespan=lifespan)

    @app.exception_handler(OGError)
    async def og_error(request: Request, exc: OGError) -> JSONResponse:
        status = 502 if isinstance(exc, ProviderError) else 503
        if isinstance(exc, (InsufficientBalanceError, NotAcknowledgedError)):
            status = 503
        return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=status)

    @app.post("/chat")
    async def chat(body: ChatIn, broker: Annotated[AsyncBroker, Depends(get_broker)]) -> ChatOut:
        params: dict[str, Any] = {}
        if body.max_tokens is not None:
            params["max_tokens"] = body.max_tokens
        result = await broker.inference.chat(provider, [{"role": "user", "content": body.message}], **params)
        verification = await result.verification
        return ChatOut(
            answer=result.content,
            chat_id=result.chat_id,
            fee_wei=str(result.fee),
            verification=verification.status.value,
        )

    @app.get("/balance")
    async def balance(broker: Annotated[AsyncBroker, Depends(get_broker)]) -> dict[str, str]:
        ledger = await broker.ledger.get_ledger()
        account = await broker.ledger.get_account(provider)
        return {"ledger_available": str(ledger.available), "provider_spendable": str(account.spendable)}

    return app


async def main() -> None:
    """Start the devnet, fund a user, and serve the app on 127.0.0.1:8000 until interrupted."""
    import uvicorn

    from og_inference_devnet import start_devnet

    async with start_devnet(with_providers=True) as dn:
        user = dn.accounts[1]
        chatbot = next(p for p in dn.providers if p.service_type == "chatbot")
        async with AsyncBroker(user.private_key, network=dn.network) as setup:
            await setup.ledger.add_ledger(og("10"))
        app = create_app(user.private_key, network=dn.network, provider=chatbot.address)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8000, log_level="info"))
        print('POST http://127.0.0.1:8000/chat  {"message": "hello"}')
        await server.serve()


if __name__ == "__main__":
    anyio.run(main)
