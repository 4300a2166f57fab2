"""A Debian package's control stanza as data, never as text to paste.

`parse` reads the stanza `dpkg-deb --field` prints (and a bundle carries) strictly: one stanza, each
field once, names as deb-control(5) allows, continuation lines only after a field, no control
characters. `stanza` writes an index entry with the site's own formatter; the fields the site
vouches for (Filename, Size, checksums) are always the site's, never the package's.
"""

from __future__ import annotations

import re

FIELD_NAME_RE = re.compile(r"^[!-9;-~][!-9;-~]{0,63}$")  # US-ASCII without controls, space and ':'
REQUIRED = ("Package", "Version", "Architecture")
SITE_FIELDS = frozenset({"filename", "size", "md5sum", "sha1", "sha256", "sha512", "description-md5"})
_BAD_CHAR_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline are the only controls allowed
MAX_CONTROL = 256 << 10


def parse(text: str) -> list[tuple[str, str]]:
    """The fields of one control stanza, in order: [(name, value)], a multi-line value joined by
    newlines (continuation lines keep their leading space). ValueError says what is wrong."""
    if len(text) > MAX_CONTROL:
        raise ValueError(f"control stanza of {len(text)} characters, more than {MAX_CONTROL}")
    if _BAD_CHAR_RE.search(text):
        raise ValueError("control stanza holds a control character")
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in text.strip("\n").split("\n"):
        if not line.strip():
            raise ValueError("control text holds an empty line (a second stanza)")
        if line[0] in " \t":
            if not fields:
                raise ValueError("control text starts with a continuation line")
            name, value = fields[-1]
            fields[-1] = (name, f"{value}\n{line}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not FIELD_NAME_RE.match(name) or name[0] in "#-":
            raise ValueError(f"control line {line[:60]!r} is not 'Field: value'")
        if name.lower() in seen:
            raise ValueError(f"control field {name} appears twice")
        seen.add(name.lower())
        fields.append((name, value.strip(" \t")))
    missing = [name for name in REQUIRED if name.lower() not in seen]
    if missing:
        raise ValueError(f"control stanza has no {', '.join(missing)} field")
    return fields


def value(fields: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in fields if n.lower() == name.lower()), "")


def stanza(fields: list[tuple[str, str]], site_fields: list[tuple[str, str]]) -> str:
    """An index entry: the package's own fields (less those the site vouches for), then the site's."""
    lines = [f"{name}: {text}" for name, text in fields if name.lower() not in SITE_FIELDS]
    for name, text in site_fields:
        if "\n" in text or not FIELD_NAME_RE.match(name):
            raise ValueError(f"site field {name}: {text!r}")
        lines.append(f"{name}: {text}")
    return "\n".join(lines) + "\n"
