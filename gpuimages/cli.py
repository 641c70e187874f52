"""Glue for the CLI edge: one task decorator that gives every task the same options,
help and error handling; user errors become one paragraph and an exit code.

A selecting task is written `def build(c, selection, dry_run=False, ...)`; `command()`
replaces `selection` with the selection options (the axes, `--all`, `--variant`,
`--matrix`) in the signature invoke reads, and hands the body one parsed `Selection`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from invoke import task
from invoke.exceptions import Exit

from gpuimages.console import setup_logging
from gpuimages.core.errors import GpuImagesError
from gpuimages.core.options import AXES, HELP, TASK_HELP
from gpuimages.core.paths import MATRIX, WORK_DIR
from gpuimages.core.reference import shown, tamed
from gpuimages.facts.select import Selection

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
    positional: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Any]:
    """An invoke task with the shared options and help, run under `guarded`.

    An option's help is its task's own wording (TASK_HELP) else the shared one (HELP); a
    name invoke spells without its trailing underscore (`from_` is --from) is looked up so.
    """

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
        own_help = TASK_HELP.get(name or body.__name__, {})
        names = [p.name.rstrip("_") for p in params[1:]]
        many = "variant" if selects in ("many", "everything") else None
        return task(
            name=name,
            auto_shortflags=False,
            iterable=[*iterable, *([many] if many else [])],
            positional=list(positional),
            help={n: own_help.get(n) or HELP[n] for n in names},
        )(wrapper)

    return decorate


DEBUG_ENV = "GPUIMAGES_DEBUG"  # =1: show the full trace of an unexpected error
CRASH_DIR = WORK_DIR / "logs"


def _leave_quietly() -> None:
    """stdout to /dev/null, so the interpreter's last flush cannot fail as well."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def quiet_broken_pipe() -> None:
    """A reader that leaves early (`invoke --help build | head -1`) while invoke itself
    prints (help, --list: outside any task, so `guarded` cannot see it) ends the program
    quietly with 141, as shell tools do, not with invoke's traceback."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if not issubclass(kind, BrokenPipeError):
            previous(kind, exc, tb)
            return
        _leave_quietly()
        os._exit(141)  # the hook cannot set the exit code; nothing is left to clean up

    sys.excepthook = hook


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a task with logging set up; GpuImagesError -> 'error: ...' on stderr + exit code.

    Anything else is a bug or a fault nobody foresaw: one paragraph saying so and where
    the full trace was written (or the trace itself with GPUIMAGES_DEBUG=1). SIGTERM (what
    CI cancellation sends) stops a task like Ctrl-C does.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        try:
            with terminate_as_interrupt():
                return func(*args, **kwargs)
        except GpuImagesError as exc:
            raise Exit(f"error: {tamed(str(exc))}", code=exc.exit_code) from None
        except KeyboardInterrupt as exc:
            code = 143 if isinstance(exc, Terminated) else 130
            raise Exit("interrupted", code=code) from None
        except Exit:
            raise  # a task's own exit code (`invoke run` passes the command's on)
        except BrokenPipeError:
            # The reader left (`invoke resolve --json | head`): stop quietly, as shell tools do.
            _leave_quietly()
            raise Exit(code=141) from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            where = _write_trace()
            raise Exit(
                f"error: unexpected {type(exc).__name__}: {shown(str(exc), 300)}. This is a "
                f"bug in gpuimages or a fault it does not handle yet; the full trace is in "
                f"{where} (or rerun with {DEBUG_ENV}=1 to see it here).",
                code=1,
            ) from None

    return wrapper


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so every cleanup path runs for both."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_trace() -> str:
    text = traceback.format_exc()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for folder in (CRASH_DIR, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"gpuimages-crash-{stamp}-{os.getpid()}.txt"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "(nowhere: no writable folder)"


def after_dashes(c: Any) -> list[str]:
    """The words after `--` as the shell passed them (invoke's remainder re-joins them)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return shlex.split(c.remainder) if c.remainder else []
