"""The error types users see. Each carries one readable paragraph, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GpuImagesError(Exception):
    """Base class: a problem gpuimages explains to the user and exits on."""

    exit_code = 1


class UserInputError(GpuImagesError):
    """Bad matrix, bad option, unsupported combination: refused before any work (exit 2)."""

    exit_code = 2


class CommandError(GpuImagesError):
    """An external command failed; the message carries the argv and the output tail."""

    def __init__(self, message: str, *, argv: list[str] | None = None, tail: str = "") -> None:
        super().__init__(message)
        self.argv = argv or []
        self.tail = tail


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix when a close choice exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    items = list(choices)
    return ", ".join(items) if items else "(none)"
