"""How a long library step tells the CLI edge what it is doing: a callable taking one
line ("ddp ...", "3/12 layers, 812 of 1,104 MB"); the CLI shows it with rich, tests and
library callers that do not care pass nothing."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def silent(_: str) -> None:
    """The default Progress: says nothing."""
