"""Per-call request options in the openai shape, and the allow-lists of body parameters.

A request method's ``**params`` hold keyword arguments of two kinds, told apart here before
anything is sent (the SDK's own arguments, such as ``budget=`` and ``auto_fund=``, are named
parameters of the methods and never reach ``**params``):

* **call options** (:data:`CALL_OPTIONS`): ``timeout=``, ``max_retries=``, ``extra_headers=``,
  ``extra_query=``, ``extra_body=``. They configure the exchange and never reach the body;
* **OpenAI body parameters**: only the names in the endpoint's allow-list (:data:`BODY_PARAMS`).
  Anything else raises :class:`~og_inference_async.ConfigError` that names ``extra_body=``, the
  way to send a parameter the list does not know.

:class:`CallOptions` is what the provider transport applies to one call; ``with_options()``
views hold one as their defaults and :meth:`CallOptions.merged` lays a call's own over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._exceptions import ConfigError
from ._retry import RequestRetryPolicy
from ._validate import check_int, check_seconds, shown

__all__ = ["BODY_PARAMS", "CALL_OPTIONS", "CallOptions", "split_params"]

#: The openai-style options of every request method (never part of the body).
CALL_OPTIONS = frozenset({"timeout", "max_retries", "extra_headers", "extra_query", "extra_body"})

_CHAT = frozenset(
    {
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "web_search_options",
    }
)
_IMAGE = frozenset(
    {"background", "moderation", "output_compression", "output_format", "quality", "style", "user"}
)

#: The OpenAI body parameters each endpoint accepts as keyword arguments (the explicit arguments
#: of the methods, such as ``model`` or ``n`` for images, are not repeated here).
BODY_PARAMS: Mapping[str, frozenset[str]] = {
    "chat": _CHAT,
    "image generation": _IMAGE,
    "image edit": _IMAGE | {"input_fidelity"},
    "transcription": frozenset(
        {"chunking_strategy", "include", "prompt", "stream", "temperature", "timestamp_granularities"}
    ),
}

#: Headers the SDK must set itself: the session token, and what the response hash depends on.
_RESERVED_HEADERS = frozenset({"authorization", "accept-encoding", "content-type", "content-length", "host"})


def _str_map(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f"{name} must be a mapping of non-empty str names to str values, got {shown(value)}"
        )
    return dict(value)


@dataclass(frozen=True, slots=True)
class CallOptions:
    """The openai-style options of one call (``None`` / empty: inherit).

    Attributes:
        timeout: seconds each attempt may take (connect, write, pool, and each read), overriding
            the HTTP client's.
        max_retries: retries after the first attempt (the attempts of the broker's
            :class:`RequestRetryPolicy` become ``max_retries + 1``; what is retried stays billing-safe).
        headers: extra request headers (``extra_headers=``).
        query: extra query parameters (``extra_query=``).
        body: extra body parameters, sent as given (``extra_body=``).
    """

    timeout: float | None = None
    max_retries: int | None = None
    headers: Mapping[str, str] | None = None
    query: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> CallOptions:
        """Check and build the options from keyword arguments named as in :data:`CALL_OPTIONS`.

        Raises:
            ConfigError: an unknown option or a bad value.
        """
        unknown = set(values) - CALL_OPTIONS
        if unknown:
            raise ConfigError(f"unknown request option(s) {sorted(unknown)}; known: {sorted(CALL_OPTIONS)}")
        timeout = values.get("timeout")
        retries = values.get("max_retries")
        headers = values.get("extra_headers")
        query = values.get("extra_query")
        body = values.get("extra_body")
        if headers is not None:
            headers = _str_map("extra_headers", headers)
            reserved = sorted(k for k in headers if k.lower() in _RESERVED_HEADERS)
            if reserved:
                raise ConfigError(f"extra_headers may not set {reserved}: the SDK sets these itself")
        if body is not None and (
            not isinstance(body, Mapping) or not all(isinstance(k, str) and k for k in body)
        ):
            raise ConfigError(f"extra_body must be a mapping with non-empty str keys, got {shown(body)}")
        return cls(
            timeout=None if timeout is None else check_seconds("timeout", timeout),
            max_retries=None
            if retries is None
            else check_int("max_retries", retries, minimum=0, maximum=999),
            headers=headers,
            query=None if query is None else _str_map("extra_query", query),
            body=None if body is None else dict(body),
        )

    def merged(self, call: CallOptions | None) -> CallOptions:
        """These options with ``call``'s laid over them (mappings merge key by key, the call winning)."""
        if call is None:
            return self

        def over(base: Mapping[str, Any] | None, top: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            return top if base is None else base if top is None else {**base, **top}

        return CallOptions(
            timeout=call.timeout if call.timeout is not None else self.timeout,
            max_retries=call.max_retries if call.max_retries is not None else self.max_retries,
            headers=over(self.headers, call.headers),
            query=over(self.query, call.query),
            body=over(self.body, call.body),
        )

    def as_kwargs(self) -> dict[str, Any]:
        """The options as the keyword arguments that build them again (unset ones left out)."""
        named = {
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "extra_headers": self.headers,
            "extra_query": self.query,
            "extra_body": self.body,
        }
        return {k: v for k, v in named.items() if v is not None}

    def retry(self, policy: RequestRetryPolicy) -> RequestRetryPolicy:
        """``policy`` with ``max_retries`` applied."""
        if self.max_retries is None:
            return policy
        return replace(policy, attempts=self.max_retries + 1)


def split_params(params: Mapping[str, Any], endpoint: str) -> tuple[dict[str, Any], CallOptions | None]:
    """Split a request method's ``**params`` into ``(body parameters, call options)``.

    The body parameters include ``extra_body``'s, laid over the named ones.

    Raises:
        ConfigError: a name that is neither an option nor in ``endpoint``'s allow-list (the
            message names ``extra_body=``), or a bad option value; nothing has been sent.
    """
    if not params:  # the common call: nothing to split
        return {}, None
    allowed = BODY_PARAMS[endpoint]
    body: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in params.items():
        if key in allowed:
            body[key] = value
        elif key in CALL_OPTIONS:
            options[key] = value
        else:
            raise ConfigError(
                f"{shown(key)} is not a known {endpoint} parameter; nothing was sent",
                hint=f"pass provider-specific parameters as extra_body={{{key!r}: ...}}",
            )
    call = CallOptions.of(options) if options else None
    if call is not None and call.body:
        body.update(call.body)
    return body, call
