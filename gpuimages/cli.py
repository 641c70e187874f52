"""Glue for the CLI edge: user errors become one paragraph and an exit code, not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from invoke.exceptions import Exit

from gpuimages.console import setup_logging
from gpuimages.errors import GpuImagesError, UserInputError
from gpuimages.variant import VariantRequest

F = TypeVar("F", bound=Callable)


def guarded(func: F) -> F:
    """Run a task with logging set up; GpuImagesError -> 'error: ...' on stderr + exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        try:
            return func(*args, **kwargs)
        except GpuImagesError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def request_from(
    torch: str | None,
    cuda: str | None,
    cudnn: str | None = None,
    flavor: str | None = None,
    python: str | None = None,
    os: str | None = None,
    horovod: str | None = None,
) -> VariantRequest | None:
    """A VariantRequest from CLI options; None when no variant option was given at all."""
    given = [torch, cuda, cudnn, flavor, python, os, horovod]
    if not any(given):
        return None
    if not torch or not cuda:
        missing = "--torch" if not torch else "--cuda"
        raise UserInputError(
            f"{missing} is required with the other variant options (e.g. --torch 1.12.0 "
            "--cuda 11.3, or --cuda cpu)."
        )
    return VariantRequest(
        torch=torch, cuda=cuda, cudnn=cudnn, flavor=flavor, python=python, os=os, horovod=horovod
    )
