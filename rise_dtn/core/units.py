"""How every command writes a byte count for people: one vocabulary (rise(7), UNITS).

Binary units (KiB, MiB, GiB, TiB; B below 1 KiB), one decimal: the same
words in rise-send's, rise-xfer's, rise-call's and rise-daemon's lines.
JSON always gives plain byte counts instead.
"""

from __future__ import annotations


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def human_seconds(seconds: int) -> str:
    """A duration in its largest whole unit: 6d, 3h, 12m, 40s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(0, seconds)}s"
