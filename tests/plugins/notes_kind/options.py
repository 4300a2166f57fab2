"""`bundler site init --public-note NAME`."""

from __future__ import annotations

import click

from bundler.kinds.base import Options


class NoteOptions(Options):
    def site_init_options(self) -> list[click.Option]:
        return [click.Option(["--public-note", "public_notes"], multiple=True, metavar="NAME",
                             help="a note anyone on the site's network may read without an account (repeatable)")]
