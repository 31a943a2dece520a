"""Results serialise, read like mappings and say whether they passed (issue 11, "Results")."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

import og_inference_async.types as types_mod
import og_inference_async.types.discovery as discovery_mod
import og_inference_async.types.funding as funding_mod
import og_inference_async.types.inference as inference_mod
from og_inference_async.types import Account, Ledger, Refund
from og_inference_async.types._base import Frozen
from og_inference_async.types.funding import AckResult, RefundCompletion
from og_inference_async.types.inference import (
    ChatResult,
    FeeBreakdown,
    VerificationHandle,
    VerificationResult,
    VerificationStatus,
)

from .test_validation import make_service  # one Service factory for the unit tests

BIG = 2**70 + 1  # above 2**53: not exact as a JavaScript number
PROVIDER = "0x" + "ab" * 20


def _chat(handle: VerificationHandle, fee: int = BIG) -> ChatResult:
    cost = FeeBreakdown(input_units=1, output_units=1, input_price=fee, output_price=0, fee=fee)
    return ChatResult(
        provider=PROVIDER,
        model="m",
        chat_id="chatcmpl-1",
        usage={"prompt_tokens": 1},
        fee=fee,
        cost=cost,
        request_sha256=None,
        response_sha256="00" * 32,
        raw={"id": "chatcmpl-1"},
        verification=handle,
        content="hi",
        message={"role": "assistant", "content": "hi"},
        finish_reason="stop",
    )


def test_chat_result_dumps_a_pending_verification_as_null() -> None:
    """A result whose verification is pending dumps it as null (it used to raise)."""
    data = json.loads(_chat(VerificationHandle()).model_dump_json())
    assert data["verification"] is None
    assert data["fee"] == BIG


def test_chat_result_dumps_a_settled_verification_as_its_outcome() -> None:
    """A settled verification dumps as its outcome, and a dump validates back to an equal outcome."""
    outcome = VerificationResult(status=VerificationStatus.BOUND, provider=PROVIDER, chat_id="chatcmpl-1")
    result = _chat(VerificationHandle(outcome))
    data = json.loads(result.model_dump_json())
    assert data["verification"]["status"] == "bound"
    assert data["verification"]["passed"] is True
    again = ChatResult.model_validate_json(result.model_dump_json())
    assert again.verification.result == outcome
    assert again.content == "hi" and again.fee == BIG


def test_a_pending_verification_loads_back_as_unavailable() -> None:
    """Validating a dump taken while pending settles the handle as UNAVAILABLE (never a hang)."""
    again = ChatResult.model_validate_json(_chat(VerificationHandle()).model_dump_json())
    assert again.verification.done
    assert again.verification.result is not None
    assert again.verification.result.status is VerificationStatus.UNAVAILABLE


def test_wei_dump_as_strings_on_request() -> None:
    """``wei_as_str=True`` gives every amount (nested and derived too) as a decimal string."""
    data = json.loads(_chat(VerificationHandle()).model_dump_json(wei_as_str=True))
    assert data["fee"] == str(BIG)
    assert data["cost"]["fee"] == str(BIG) and data["cost"]["input_units"] == 1
    ledger = Ledger(user=PROVIDER, total=BIG, available=1)
    assert json.loads(ledger.model_dump_json(wei_as_str=True)) == {
        "user": PROVIDER,
        "total": str(BIG),
        "available": "1",
        "additional_info": "",
        "locked": str(BIG - 1),
    }
    assert ledger.model_dump(wei_as_str=True)["locked"] == str(BIG - 1)
    assert Ledger.model_validate_json(ledger.model_dump_json(wei_as_str=True)) == ledger


def test_ledger_dump_includes_locked() -> None:
    """``Ledger.model_dump_json()`` includes ``locked`` (a derived value), and loads back."""
    ledger = Ledger(user=PROVIDER, total=10, available=3)
    assert json.loads(ledger.model_dump_json())["locked"] == 7
    assert ledger.model_dump()["locked"] == 7
    assert Ledger.model_validate(ledger.model_dump()) == ledger


def test_derived_values_are_dumped_everywhere() -> None:
    """Account.spendable, Service.endpoint and RefundCompletion.newly_requested are in the dumps."""
    account = Account(
        user=PROVIDER,
        provider=PROVIDER,
        nonce=0,
        balance=5,
        pending_refund=2,
        refunds=(Refund(index=0, amount=2, created_at=1, processed=False),),
        additional_info="",
        acknowledged=True,
        generation=0,
        revoked_bitmap=0,
    )
    assert account.model_dump()["spendable"] == 3
    service = make_service("chatbot")
    assert service.model_dump()["endpoint"] == "http://provider.test/v1/proxy"
    assert RefundCompletion().model_dump()["newly_requested"] == 0


def _public_models() -> list[type[Frozen]]:
    found: dict[str, type[Frozen]] = {}
    for module in (types_mod, discovery_mod, funding_mod, inference_mod):
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, Frozen):
                found[name] = value
    return list(found.values())


@pytest.mark.parametrize("model", _public_models(), ids=lambda m: m.__name__)
def test_every_public_model_has_serialisable_properties(model: type[Frozen]) -> None:
    """No public model keeps a plain property out of its dump (each is a ``computed_field``)."""
    plain = [
        name
        for klass in model.__mro__
        if klass.__module__.startswith("og_inference_async")
        for name, value in vars(klass).items()
        if isinstance(value, property) and name not in model.model_computed_fields
    ]
    # GeneratedImage.data is the decoded bytes of a field already dumped (b64_json / url).
    assert [p for p in plain if (model.__name__, p) != ("GeneratedImage", "data")] == []


@pytest.mark.parametrize(
    ("status", "passed"),
    [
        (VerificationStatus.BOUND, True),
        (VerificationStatus.SIGNED, True),
        (VerificationStatus.NOT_VERIFIABLE, True),
        (VerificationStatus.NOT_BOUND, False),
        (VerificationStatus.REJECTED, False),
        (VerificationStatus.UNAVAILABLE, False),
        (VerificationStatus.SKIPPED, False),
    ],
)
def test_verification_result_is_truthy_only_when_it_passed(status: VerificationStatus, passed: bool) -> None:
    """``if result:`` takes the true branch only for outcomes that passed."""
    result = VerificationResult(status=status, provider=PROVIDER)
    assert bool(result) is passed
    assert result.passed is passed
    taken = "yes" if result else "no"
    assert taken == ("yes" if passed else "no")


def test_models_read_like_mappings() -> None:
    """``model["field"]``, ``model.get``, ``in`` and ``dict(model)`` read fields and derived values."""
    ack = AckResult(provider=PROVIDER, status="already_acknowledged")
    assert ack["status"] == "already_acknowledged"
    service = make_service("chatbot")
    assert service["endpoint"] == "http://provider.test/v1/proxy"
    assert service["model"] == "m"
    assert "endpoint" in service and "nope" not in service
    assert service.get("nope", 7) == 7
    assert dict(service)["is_verifiable"] is True
    with pytest.raises(KeyError):
        service["nope"]
    with pytest.raises(KeyError):
        service["model_config"]


def test_mapping_unpacking_matches_the_dump() -> None:
    """``{**model}`` gives the same names as ``model_dump()``."""
    ledger = Ledger(user=PROVIDER, total=10, available=3)
    unpacked: dict[str, Any] = {**ledger}
    assert unpacked == ledger.model_dump()
