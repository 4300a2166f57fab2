"""Command line: parse, call one library function, print. Results on stdout, progress and errors on
stderr. One module per verb group (bundles: the verbs on bundle files; site; fleet); the root group
and what they share in root.py; content kinds add their own commands (Kind.commands).

A command imports the pipeline it calls inside its function: every pipeline at the top would cost each
command 0.13 s more at start (measured: 0.57 s against 0.44 s with the kinds alone). For the same
reason a kind loads its build side (profile items, collection) and its service (routes, front rules,
commands) where they are used (bundler/kinds/__init__.py), prune the site's services, and
site/config.py the x509 code."""

from __future__ import annotations

import gc
import sys

# A command's start-up makes some 100,000 objects that live as long as it does (modules, classes,
# functions) and next to no garbage; the collector's default pass every 700 new objects walks them
# some 80 times for nothing (20 to 30 ms of an import here). A pass every 100,000: none in a short
# command, and still one whenever a long-running one (`site up --foreground`) grows by that much.
gc.set_threshold(100_000, 10, 10)

from bundler.cli import bundles, fleet, site  # noqa: E402, F401 - each registers its commands with the root
from bundler.cli.root import cli  # noqa: E402

__all__ = ["cli", "main"]


def main() -> None:
    try:
        cli(prog_name="bundler")
    except SystemExit:
        # click met a closed pipe writing help or usage: it wrapped stdout and exits 1; say 141 as tools do
        if type(sys.stdout).__name__ in ("PacifyFlushWrapper", "_PacifyFlushWrapper"):
            sys.exit(141)
        raise
    finally:
        # the interpreter's shutdown walks every object the command made (modules, classes: some
        # 300,000) in its last garbage collections, 50 to 70 ms here; frozen, they are not walked
        # (they are freed all the same, as the process ends)
        gc.freeze()
