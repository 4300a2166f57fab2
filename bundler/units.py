"""Text for people: byte counts, and content from a bundle made safe to print; and `--json` for scripts."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys


def human(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def age_text(age: dt.timedelta) -> str:
    """How long, for people: `45 s`, `12 min`, `5 h`, `6 d`."""
    s = max(0, int(age.total_seconds()))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h" if s < 172_800 \
        else f"{s // 86_400} d"


def printable(value: object) -> str:
    """Bundle content shown on a terminal: control characters (newlines, escape sequences) are
    written as escapes, so a forged name cannot add lines or repaint the screen."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(value))


def emit_json(value: object) -> None:
    """A command's `--json` answer on stdout: indented, keys sorted, one document."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def interval(text: str) -> float:
    """`30s`, `15m`, `1h` -> seconds (ValueError otherwise)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh])", text.strip())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not an interval: a number and s, m or h (30s, 15m, 1h)")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]
