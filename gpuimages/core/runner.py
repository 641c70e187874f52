"""The one way gpuimages runs an external command.

It logs the argv (with secrets masked), streams the output to a log file and, line by
line, to an optional callback (progress views), and raises `CommandError` with the
output's tail when the command fails or runs past its timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gpuimages.core.errors import CommandError

log = logging.getLogger(__name__)

TAIL_LINES = 40
_LIVE: set[int] = set()  # process groups of commands running now (run() starts each)
_LIVE_LOCK = threading.Lock()
# Set by stop_all: a worker thread between stop_all and its Popen would otherwise start a
# build nobody kills, and the interrupted CLI would wait for it to finish.
_STOPPED = threading.Event()


def stop_all() -> None:
    """Kill every command run() has running (Ctrl-C, SIGTERM): their children run in
    sessions of their own, so the terminal's signal never reaches them. A command that
    another thread starts after this is killed as soon as it starts (see run())."""
    with _LIVE_LOCK:
        _STOPPED.set()
        groups = list(_LIVE)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    duration_s: float
    log_path: Path | None
    tail: str


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(
    argv: list[str],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    stdin_text: str | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
    secrets: Iterable[str] = (),
    what: str | None = None,
) -> CommandResult:
    """Run argv; stdout+stderr go to log_path (if given), on_line, and the kept tail."""
    secrets = tuple(s for s in secrets if s)
    shown = mask(" ".join(argv), secrets)
    log.debug("run: %s", shown)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    full_env = None if env is None else {**os.environ, **env}
    start = time.monotonic()
    # Line-buffered, so `tail -f` on a build log follows the build as it runs.
    with (
        open(log_path, "w", encoding="utf-8", buffering=1)
        if log_path
        else open(os.devnull, "w") as sink
    ):
        sink.write(f"$ {shown}\n")
        sink.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # so a timeout can end the whole process group
        )
        with _LIVE_LOCK:
            _LIVE.add(proc.pid)
            if _STOPPED.is_set():
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if stdin_text is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin_text)
            proc.stdin.close()
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            timed_out.set()
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill_on_timeout) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = mask(raw.rstrip("\n"), secrets)
                sink.write(line + "\n")
                tail.append(line)
                if on_line:
                    on_line(line)
            proc.wait()
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc.pid)
            if timer:
                timer.cancel()
        duration = time.monotonic() - start
        sink.write(f"# exit {proc.returncode} after {duration:.1f} s\n")
    result = CommandResult(tuple(argv), proc.returncode, duration, log_path, "\n".join(tail))
    if check and (proc.returncode != 0 or timed_out.is_set()):
        label = what or os.path.basename(argv[0])
        why = (
            f"timed out after {timeout:.0f} s"
            if timed_out.is_set()
            else (f"exit code {proc.returncode}")
        )
        where = f" (full log: {log_path})" if log_path else ""
        raise CommandError(
            f"{label} failed ({why}){where}: {shown}\n{result.tail}",
            argv=list(argv),
            tail=result.tail,
        )
    return result


def capture(argv: list[str], *, timeout: float = 60, env: Mapping[str, str] | None = None) -> str:
    """Run a short query command and return its stdout; raise CommandError on failure."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]}: command not found", argv=argv) from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{' '.join(argv)} timed out after {timeout:.0f} s", argv=argv) from None
    if proc.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} failed (exit code {proc.returncode}): {proc.stderr.strip()}",
            argv=argv,
            tail=proc.stderr,
        )
    return proc.stdout
