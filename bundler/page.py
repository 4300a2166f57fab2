"""Server-rendered HTML pages (no JavaScript): the site's status page and the fleet report share this
look. Every value is escaped here, once: names come from bundles and client reports."""

from __future__ import annotations

import html
from collections.abc import Sequence

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #1c2430; background: #f4f6f8; }
header { background: #1c2430; color: #fff; padding: 12px 16px; }
header h1 { margin: 0; font-size: 18px; } header p { margin: 4px 0 0; color: #c3ccd6; font-size: 13px; }
main { padding: 8px 12px 24px; max-width: 1100px; }
section { background: #fff; border-radius: 6px; margin: 12px 0; padding: 10px 12px; overflow-x: auto; }
h2 { font-size: 16px; margin: 2px 0 8px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 4px 8px 4px 0; border-bottom: 1px solid #e4e8ec; vertical-align: top; }
th { color: #5b6773; font-weight: 600; }
td { word-break: break-word; } td:first-child { white-space: nowrap; } code, pre { font: 13px ui-monospace, monospace; }
pre { white-space: pre-wrap; word-break: break-all; margin: 0; }
.ok { color: #17803d; font-weight: 600; } .bad { color: #b42318; font-weight: 600; }
.muted { color: #5b6773; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def state(good: bool, yes: str = "healthy", no: str = "NOT answering") -> str:
    return f'<span class="{"ok" if good else "bad"}">{esc(yes if good else no)}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str = "none") -> str:
    """Cells are HTML already (escape values with `esc` or render them with `value`)."""
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{f'<thead><tr>{head}</tr></thead>' if any(headers) else ''}<tbody>{body}</tbody></table>"


def value(item: object) -> str:
    """A JSON-like value as HTML: a mapping as a two-column table, a list of mappings as a table
    with their keys as columns, a list of scalars as lines, a scalar as escaped text."""
    if isinstance(item, dict):
        return table(["", ""], [[f"<code>{esc(k)}</code>", value(v)] for k, v in item.items()], "none")
    if isinstance(item, list):
        if item and all(isinstance(i, dict) for i in item):
            columns = list(dict.fromkeys(k for i in item for k in i))
            return table(columns, [[value(i.get(c, "")) for c in columns] for i in item])
        return "<br>".join(value(i) for i in item) if item else '<span class="muted">none</span>'
    if isinstance(item, bool):
        return state(item, "yes", "no")
    return esc(item)


def render(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> bytes:
    """A whole page: `sections` are (heading, HTML body)."""
    parts = "".join(f"<section><h2>{esc(heading)}</h2>{body}</section>" for heading, body in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>{parts}</main></body></html>").encode()
