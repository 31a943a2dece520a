"""The one base of every public model: frozen, and refusing fields it does not declare."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen"]


class Frozen(BaseModel):
    """A frozen pydantic model (``extra="forbid"``): results can be shared and never drift."""

    model_config = ConfigDict(frozen=True, extra="forbid")
