"""Small text formatters shared by the CLI and the converters' summaries."""

from __future__ import annotations


def human_size(n: int | float | None) -> str:
    """Bytes as ``"512 B"``, ``"98.5 KB"``, ``"13.4 MB"`` (binary units); ``"?"`` when unknown."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
