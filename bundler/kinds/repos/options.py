"""`bundler import --force-refs`: a Git ref allowed to move other than forward."""

from __future__ import annotations

import click

from bundler.kinds.base import Options
from bundler.kinds.repos.site import check_force_ref


class RepoOptions(Options):
    def import_options(self) -> list[click.Option]:
        return [click.Option(["--force-refs", "force_refs"], multiple=True, metavar="REF",
                             callback=lambda _ctx, _param, values: tuple(map(check_force_ref, values)),
                             help="let this Git ref move other than forward, named in full: refs/heads/main, "
                                  "refs/tags/v1, or REPO:REF for one repository (repeatable)")]
