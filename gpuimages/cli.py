"""Glue for the CLI edge: one task decorator that gives every task the same options,
help and error handling; user errors become one paragraph and an exit code.

A selecting task is written `def build(c, selection, dry_run=False, ...)`; `command()`
replaces `selection` with the selection options (the axes, `--all`, `--variant`,
`--matrix`) in the signature invoke reads, and hands the body one parsed `Selection`.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from invoke import task
from invoke.exceptions import Exit

from gpuimages.console import setup_logging
from gpuimages.errors import GpuImagesError
from gpuimages.options import AXES, HELP
from gpuimages.paths import MATRIX
from gpuimages.select import Selection

# many: --all | --variant NAME... | axes; one: --variant NAME | axes; everything: as many,
# without --all, nothing chosen meaning the whole matrix; request: the axes only.
Selects = Literal["many", "one", "everything", "request"]


def selection_parameters(selects: Selects, axes: Iterable[str]) -> list[inspect.Parameter]:
    def option(name: str, default: object) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)

    params = [option(axis, None) for axis in axes]
    if selects == "many":
        params.append(option("all", False))
    if selects != "request":
        params.append(option("variant", None))
    return [*params, option("matrix", str(MATRIX))]


def command(
    *,
    selects: Selects | None = None,
    axes: Iterable[str] = tuple(AXES),
    name: str | None = None,
    iterable: Iterable[str] = (),
    help: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """An invoke task with the shared options and help, run under `guarded`."""

    def decorate(body: Callable[..., Any]) -> Any:
        own = list(inspect.signature(body).parameters.values())
        shared = selection_parameters(selects, axes) if selects else []
        if selects:
            own.pop(1)  # the `selection` parameter: the shared options stand in its place
        shared_names = [p.name for p in shared]

        def run(c: Any, **options: Any) -> Any:
            if not selects:
                return body(c, **options)
            picked = {n: options.pop(n) for n in shared_names}
            selection = Selection.from_options(
                picked, everything_by_default=selects == "everything"
            )
            return body(c, selection, **options)

        wrapper = guarded(run)
        params = [own[0], *(p.replace(kind=p.KEYWORD_ONLY) for p in own[1:]), *shared]
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__name__, wrapper.__doc__ = body.__name__, body.__doc__
        wrapper.__module__ = body.__module__
        names = [p.name for p in params[1:]]
        many = "variant" if selects in ("many", "everything") else None
        return task(
            name=name,
            auto_shortflags=False,
            iterable=[*iterable, *([many] if many else [])],
            help={**{n: HELP[n] for n in names}, **(help or {})},
        )(wrapper)

    return decorate


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task with logging set up; GpuImagesError -> 'error: ...' on stderr + exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            return func(*args, **kwargs)
        except GpuImagesError as exc:
            raise Exit(f"error: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def after_dashes(c: Any) -> list[str]:
    """The words after `--` as the shell passed them (invoke's remainder re-joins them)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return shlex.split(c.remainder) if c.remainder else []
