"""How much memory this machine has, and byte counts in words."""

from __future__ import annotations

import os

__all__ = ["format_bytes", "physical_memory"]

# Assumed where the operating system does not tell (no sysconf: Windows).
_UNKNOWN = 64 << 30


def physical_memory() -> int:
    """This machine's physical memory in bytes."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return _UNKNOWN


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"``; decimal units (1 KB = 1000 bytes)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
