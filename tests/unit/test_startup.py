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


def test_help_loads_no_command_module_and_shows_each_command_as_its_own_help_would() -> None:
    """`bundler --help` lists every command without loading the module it lives in (COMMANDS keeps
    where it is and its first paragraph); that paragraph is the command's own, so the list reads as
    click would make it from the loaded commands."""
    loaded = loaded_after("from bundler.cli import cli\ntry:\n    cli(['--help'], prog_name='bundler')\n"
                          "except SystemExit:\n    pass")
    families = {"bundler.cli.build", "bundler.cli.keys", "bundler.cli.review", "bundler.cli.imports",
                "bundler.cli.publish", "bundler.cli.site", "bundler.cli.fleet"}
    assert families.isdisjoint(loaded) and "bundler.pipeline.build" not in loaded

    import importlib

    import click

    from bundler.cli.root import COMMANDS

    assert {where.partition(":")[0] for where, _ in COMMANDS.values()} == families
    for name, (where, first) in COMMANDS.items():
        module, _, attribute = where.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and (command.name == name or name == "import"), name
        for limit in (45, 60, 74):  # what `bundler --help` shows at any terminal width
            assert click.Command(name, help=first).get_short_help_str(limit) == command.get_short_help_str(limit), name


def test_a_command_loads_its_own_family_only() -> None:
    """`bundler keygen` loads neither a pipeline nor the content kinds; `bundler verify` not the build."""
    keygen = loaded_after("import click\nfrom bundler.cli import cli\ncli.get_command(click.Context(cli), 'keygen')")
    assert "bundler.cli.keys" in keygen and not any(m.startswith(("bundler.pipeline", "bundler.kinds")) for m in keygen)
    verify = loaded_after("import click\nfrom bundler.cli import cli\ncli.get_command(click.Context(cli), 'verify')")
    assert "bundler.cli.review" in verify and "bundler.cli.build" not in verify
    assert not [name for name in verify if BUILD_OR_SERVICE.fullmatch(name)]
