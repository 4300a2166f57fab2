"""A site's life: a new site (the place, site/create.py, and what each registered content kind
keeps there), and its services started with what each kind's service asks of the front: the site
layer runs the commands it is given (the application, pipeline/server.py; the hub sync), naming no
module above it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from bundler import CLI_MODULE
from bundler.kinds import KINDS
from bundler.pipeline import server
from bundler.site.config import SITE_FILE, SiteConfig, load_site
from bundler.site.create import SiteSpec, init_site
from bundler.site.service import site_up
from bundler.site.systemd import check_runs_as, ensure_user, site_user

AS_ROOT_HINT = ("install bundler where every user can run it (python3 -m venv /opt/bundler; /opt/bundler/bin/pip "
                "install ...) and put the site where every user can reach it (/srv/...); or, knowing that every "
                "process that reads from the network then runs as root: --as-root")


def create_site(spec: SiteSpec, kind_options: Mapping[str, object] | None = None, user: str | None = None,
                as_root: bool = False) -> SiteConfig:
    """`init_site` with every kind's own part: its section of site.yaml made from its `site init`
    options (`kind_options`, by name: the image policy, the update groups), its files and directories
    (the update cache and its signing key, say). As root
    (unless `as_root`), the site gets its own unprivileged user (`user`, default bundler-<name>), made
    when missing, and its files: `site up` then runs every service as that user. Whether that user can
    run bundler there is checked before anything is made."""
    directory, options = spec.directory, dict(kind_options or {})
    as_site_user = os.geteuid() == 0 and not as_root
    if as_site_user:
        reached = directory.resolve().parent
        while not reached.exists():  # what `site init` makes is the new user's: the way to it must be open
            reached = reached.parent
        check_runs_as(user or "nobody", sys.executable, reached, hint=AS_ROOT_HINT)
    sections, files = {}, {}
    for kind in KINDS:
        mine = {name: options.pop(name) for option in kind.options.site_init_options()
                if (name := option.name) is not None and name in options}
        if "settings" in kind.roles:
            sections[kind.key], kept = kind.settings.create(mine)
            files.update(kept)
    config = init_site(replace(spec, sections=sections, files=files), prepare=[kind.serve.init_site for kind in KINDS])
    if as_site_user:
        try:
            ensure_user(config, user or site_user(config))
        except BaseException:
            (directory / SITE_FILE).unlink(missing_ok=True)  # not a site: `site init` may run again
            raise
    return config


def start_site(directory: Path, wait: float = 30.0) -> SiteConfig:
    """`site_up` with each kind's front rules (its bodies, the files the front sends for it)."""
    site = load_site(directory)
    app, sync = [sys.executable, "-m", server.__name__], [sys.executable, "-m", CLI_MODULE, "site", "sync"]
    return site_up(directory, app, sync, wait, [rule for kind in KINDS for rule in kind.serve.front(site)])
