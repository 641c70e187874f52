"""Tables and panels for the CLI edge (tasks.py); the library itself only logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from gpuimages.variant import Variant

# Piped output (CI logs) gets a wide fixed width instead of rich's 80-column default.
console = Console(stderr=False, highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )


def variants_table(variants: Iterable[Variant], title: str = "Variants") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("name", "python", "os", "horovod", "base image", "min driver"):
        table.add_column(col, overflow="fold")
    for v in variants:
        table.add_row(v.name, v.python, v.os, v.horovod or "-", v.base_image, v.min_driver or "-")
    return table


def variant_table(variant: Variant) -> Table:
    table = Table(title=f"{variant.tag}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in variant.as_dict().items():
        if isinstance(value, list):
            value = " ".join(value) or "-"
        table.add_row(key, "-" if value is None else str(value))
    return table


def is_tty() -> bool:
    return sys.stdout.isatty()


class BuildProgress:
    """A live view of several builds: one line per variant with its latest log line."""

    def __init__(self, names: list[str]) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[name]}", style="bold"),
            TimeElapsedColumn(),
            TextColumn("{task.description}", style="dim"),
            console=err_console,
            transient=False,
        )
        self.ids = {n: self.progress.add_task("waiting", name=n, total=None) for n in names}

    def __enter__(self) -> BuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def line(self, name: str, text: str) -> None:
        text = text.strip()
        if text.startswith("#"):
            self.progress.update(self.ids[name], description=text[:90])

    def done(self, name: str, status: str) -> None:
        self.progress.update(self.ids[name], description=status, total=1, completed=1)


def build_table(results: list) -> Table:
    table = Table(title="Build report", title_justify="left")
    for col in ("variant", "status", "image id", "size MB", "seconds", "log"):
        table.add_column(col, overflow="fold")
    for r in results:
        style = "green" if r.ok else "red"
        table.add_row(
            r.variant.name,
            f"[{style}]{r.status}[/{style}]",
            (r.image_id or "-").removeprefix("sha256:")[:12],
            f"{r.size_bytes / 1e6:.0f}" if r.size_bytes else "-",
            f"{r.duration_s:.0f}",
            str(r.log_path or "-"),
        )
    return table


def smoke_table(report: dict) -> Table:
    table = Table(title=f"Smoke: {report['tag']} ({report['status']})", title_justify="left")
    for col in ("check", "status", "seconds", "reason"):
        table.add_column(col, overflow="fold")
    colors = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for check in report["checks"]:
        color = colors.get(check["status"], "white")
        table.add_row(
            check["name"],
            f"[{color}]{check['status']}[/{color}]",
            f"{check.get('duration_s', 0):.1f}",
            check.get("reason", ""),
        )
    return table
