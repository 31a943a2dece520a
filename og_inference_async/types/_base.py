"""The one base of every public model: frozen, refusing fields it does not declare, serialisable.

Serialisation: ``model_dump()`` / ``model_dump_json()`` include the derived values (``Ledger.locked``,
``Service.endpoint``, ...: they are ``computed_field`` s) and give amounts as ``int`` wei, or as
decimal strings with ``wei_as_str=True`` (JSON numbers above 2**53 do not survive a JavaScript
client). Validating a dump gives the model back (derived values are dropped, wei strings parsed).

Mapping access: ``model["endpoint"]`` and ``model.get("endpoint")`` read a field or a derived value,
as the dict-returning APIs of other 0G SDKs let code do.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    WrapSerializer,
    model_validator,
)

__all__ = ["WEI_AS_STR", "Frozen", "Wei"]

#: The serialisation context key that turns every :data:`Wei` amount into a decimal string.
WEI_AS_STR = "wei_as_str"


def _dump_wei(value: int, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
    context = info.context
    if isinstance(context, dict) and context.get(WEI_AS_STR):
        return str(value)
    return handler(value)


#: An amount in wei: an ``int`` that dumps as a string under ``wei_as_str=True``.
Wei = Annotated[int, WrapSerializer(_dump_wei)]


def _context(context: Any, wei_as_str: bool) -> Any:
    if not wei_as_str:
        return context
    return {**(context if isinstance(context, dict) else {}), WEI_AS_STR: True}


class Frozen(BaseModel):
    """A frozen pydantic model (``extra="forbid"``): results can be shared and never drift."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        """Drop the derived values a dump carries, so that validating a dump gives the model back."""
        computed = cls.model_computed_fields
        if computed and isinstance(data, dict) and any(name in data for name in computed):
            return {k: v for k, v in data.items() if k not in computed}
        return data

    def model_dump(self, *, wei_as_str: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The model as a dict (pydantic's ``model_dump``), derived values included.

        Args:
            wei_as_str: give amounts in wei as decimal strings.
            **kwargs: pydantic's ``model_dump`` options (``mode``, ``include``, ``exclude``, ...).
        """
        kwargs["context"] = _context(kwargs.get("context"), wei_as_str)
        return super().model_dump(**kwargs)

    def model_dump_json(self, *, wei_as_str: bool = False, **kwargs: Any) -> str:
        """The model as JSON text (pydantic's ``model_dump_json``), derived values included.

        Args:
            wei_as_str: give amounts in wei as decimal strings (exact in JavaScript clients).
            **kwargs: pydantic's ``model_dump_json`` options (``indent``, ``include``, ...).
        """
        kwargs["context"] = _context(kwargs.get("context"), wei_as_str)
        return super().model_dump_json(**kwargs)

    def __getitem__(self, key: str) -> Any:
        """A field or derived value by name (``metadata["endpoint"]``); ``KeyError`` for other names."""
        cls = type(self)
        if isinstance(key, str) and (key in cls.model_fields or key in cls.model_computed_fields):
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` names a field or a derived value."""
        cls = type(self)
        return isinstance(key, str) and (key in cls.model_fields or key in cls.model_computed_fields)

    def get(self, key: str, default: Any = None) -> Any:
        """A field or derived value by name, or ``default`` (the ``dict.get`` of mapping access)."""
        return self[key] if key in self else default

    def keys(self) -> list[str]:
        """The names of the fields and derived values (so ``dict(model)`` and ``**model`` work)."""
        cls = type(self)
        return [*cls.model_fields, *cls.model_computed_fields]
