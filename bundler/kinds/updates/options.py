"""`bundler site init --group`: the site's target groups for update approvals."""

from __future__ import annotations

import click

from bundler.kinds.base import Options


class UpdateOptions(Options):
    def site_init_options(self) -> list[click.Option]:
        return [click.Option(["--group", "groups"], multiple=True,
                             help="a target group for update approvals (repeatable)")]
