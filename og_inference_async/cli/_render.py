"""Output: tables and messages with rich, JSON for scripts, spinners on stderr, amounts in OG.

Human output goes to stdout; spinners, warnings and errors to stderr, so ``--json`` output can be
piped as is. Remote text (model names, URLs, messages) is printed as plain text, never as markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import OGError, format_og

__all__ = [
    "amount",
    "dump",
    "emit_json",
    "out",
    "print_pairs",
    "print_table",
    "report_error",
    "unix_time",
    "waiting",
    "warn",
]

#: Table width when stdout is not a terminal (and COLUMNS is not set): rich would take 80.
_PIPE_WIDTH = 200


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else _PIPE_WIDTH
    # soft_wrap: long values (addresses, hashes, API keys) are never broken by inserted newlines.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


out = _console(stderr=False)
err = _console(stderr=True)


def amount(wei: int) -> str:
    """Wei as OG with the unit: ``1500000000000000000`` -> ``"1.5 OG"``."""
    return f"{format_og(wei)} OG"


def unix_time(seconds: int) -> str:
    """A Unix time in seconds as UTC text (``-`` for 0)."""
    if seconds <= 0:
        return "-"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def dump(model: BaseModel, **extra: Any) -> dict[str, Any]:
    """A model as JSON-ready data (amounts stay int wei), with ``extra`` keys added."""
    data: dict[str, Any] = model.model_dump(mode="json")
    data.update(extra)
    return data


def emit_json(data: Any) -> None:
    """Write ``data`` as indented JSON on stdout (no markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


#: Columns never wrapped: values to copy and paste.
_UNBROKEN = frozenset({"Provider", "URL"})


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print a table; cells are plain text."""
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, no_wrap=name in _UNBROKEN, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)


def print_pairs(title: str | None, pairs: Iterable[tuple[str, str]]) -> None:
    """Print ``name  value`` lines under an optional bold title."""
    if title:
        out.print(Text(title, style="bold"))
    rows = list(pairs)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        out.print(Text(f"  {name:<{width}}  {value}"))


def warn(message: str) -> None:
    """A warning on stderr."""
    err.print(Text.assemble(("warning: ", "yellow bold"), message))


def report_error(exc: OGError) -> None:
    """An SDK error on stderr: its type, message and hint (no traceback)."""
    err.print(Text.assemble(("error: ", "red bold"), f"{exc.message} ({type(exc).__name__})"))
    if exc.hint:
        err.print(Text.assemble(("hint: ", "cyan"), exc.hint))


@contextmanager
def waiting(what: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while the block runs (only on a terminal)."""
    if not err.is_terminal:
        yield
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        progress.add_task(what, total=None)
        yield
