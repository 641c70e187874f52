"""Markdown cells shared by the release manifest and the catalog (GitHub-flavoured)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def cell(value: object) -> str:
    """One table cell: '-' for nothing, on one line, pipes escaped."""
    text = "-" if value in (None, "", []) else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def human_size(size: int | None) -> str:
    if not size:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def image_size(image: Mapping[str, Any]) -> str:
    """'5.70 GB (2.10 GB compressed)' from an entry's size_bytes and compressed_bytes."""
    size = human_size(image.get("size_bytes"))
    if image.get("compressed_bytes"):
        size += f" ({human_size(image['compressed_bytes'])} compressed)"
    return size
