"""The package's ``__all__`` is exactly what it exports, and every exception lives in ``_exceptions``."""

from __future__ import annotations

import inspect

import og_inference_async
from og_inference_async import _exceptions


def test_all_lists_exactly_the_public_names() -> None:
    """Every public attribute of the package is in ``__all__`` and every name there exists.

    Names load lazily on first access (module ``__getattr__``), so they are listed with ``dir()``
    (which includes them) and resolved with ``getattr``, not read from ``vars()``.
    """
    exported = {
        name
        for name in dir(og_inference_async)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(og_inference_async, name))
        and name not in {"annotations"}
    }
    assert set(og_inference_async.__all__) == exported
    assert og_inference_async.__all__ == sorted(og_inference_async.__all__)


def test_every_exception_class_is_defined_in_the_error_module() -> None:
    """Exception classes exported by the package are all defined in ``_exceptions``."""
    for name in og_inference_async.__all__:
        value = getattr(og_inference_async, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert value.__module__ == _exceptions.__name__, name


def test_revert_registry_fills_itself_from_the_classes() -> None:
    """``REVERT_ERRORS`` holds exactly the ContractRevertError subclasses that name a custom error."""
    named = {
        cls.__dict__["error_type"]: cls
        for cls in vars(_exceptions).values()
        if inspect.isclass(cls)
        and issubclass(cls, _exceptions.ContractRevertError)
        and isinstance(cls.__dict__.get("error_type"), str)
    }
    assert named == _exceptions.REVERT_ERRORS
    assert len(named) >= 46


def test_client_side_page_limit_is_a_config_error() -> None:
    """The page-size check made before reading is a ConfigError (and still a LimitTooLargeError)."""
    err = _exceptions.PageLimitError("too big", limit=51, maximum=50)
    assert isinstance(err, _exceptions.ConfigError)
    assert isinstance(err, _exceptions.LimitTooLargeError)
    assert (err.limit, err.maximum) == (51, 50)


def test_a_provider_402_is_both_a_provider_error_and_a_balance_error() -> None:
    """A provider's balance refusal keeps status, body and provider and carries the amounts."""
    from og_inference_async._http import error_for_status

    err = error_for_status(
        402,
        {},
        b'{"error": {"code": "insufficient_balance", "required": "5", "available": "3"}}',
        provider="0x" + "ab" * 20,
    )
    assert isinstance(err, _exceptions.ProviderInsufficientBalanceError)
    assert isinstance(err, _exceptions.ProviderError)
    assert isinstance(err, _exceptions.InsufficientBalanceError)
    assert (err.status_code, err.required, err.available) == (402, 5, 3)
    assert err.provider == "0x" + "ab" * 20 and err.body is not None and "insufficient_balance" in err.body
