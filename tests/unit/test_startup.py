"""What `bundler import` and `bundler verify` load as they start: the format, the verifier, the site and
each kind's entries, not a kind's build side (profile items, collection) nor its service (routes,
front rules, commands): those are a fifth of an import's start-up (bundler/kinds/__init__.py)."""

from __future__ import annotations

import re
import subprocess
import sys

BUILD_OR_SERVICE = re.compile(r"bundler\.(profile|oci\.content|site\.(service|front|http|registry_process)"
                              r"|kinds\.\w+\.(collect|spec|server|commands|docker_engine|windows_client)"
                              r"|kinds\.artifacts\.image)")


def loaded_after(code: str) -> list[str]:
    shown = "\nimport sys; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code + shown], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_an_import_and_a_verify_load_no_kinds_build_side_nor_service() -> None:
    loaded = loaded_after("import click; from bundler.cli import cli; cli.get_command(click.Context(cli), 'import')\n"
                          "import bundler.pipeline.importer, bundler.pipeline.verify")
    assert {"bundler.kinds.images", "bundler.kinds.updates.entry", "bundler.pipeline.importer"} <= set(loaded)
    assert [name for name in loaded if BUILD_OR_SERVICE.fullmatch(name)] == []


def test_a_build_and_the_site_service_load_them() -> None:
    """The names above are the modules a build and the service do load (the check is not empty)."""
    loaded = loaded_after("import bundler.pipeline.build, bundler.pipeline.server\n"
                          "from bundler.kinds import KINDS\n"
                          "for kind in KINDS: kind.commands.commands()")
    assert {"bundler.profile", "bundler.oci.content", "bundler.site.service", "bundler.site.front",
            "bundler.kinds.updates.commands"} <= {name for name in loaded if BUILD_OR_SERVICE.fullmatch(name)}
