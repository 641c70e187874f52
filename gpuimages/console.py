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
