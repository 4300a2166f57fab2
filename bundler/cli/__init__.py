"""Command line: parse, call one library function, print. Results on stdout, progress and errors on
stderr. Commands live in modules by family (build: build and init; keys: keygen and sign; review:
inspect, verify, diff; imports: import; publish; site; fleet), each importing what it calls at its
top; the root group (root.py) loads a family's module only when one of its commands runs, so a
command pays for its own pipeline only (and `bundler --help` for none of them). Content kinds add
their own commands and options as the command they go in is loaded (their commands and options
roles); a kind loads each of its roles where it is used (bundler/kinds/base.py)."""

from __future__ import annotations

import gc
import sys

# A command's start-up makes some 100,000 objects that live as long as it does (modules, classes,
# functions) and next to no garbage; the collector's default pass every 700 new objects walks them
# some 80 times for nothing (20 to 30 ms of an import here). A pass every 100,000: none in a short
# command, and still one whenever a long-running one (`site up --foreground`) grows by that much.
gc.set_threshold(100_000, 10, 10)

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
