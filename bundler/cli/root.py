"""The root of the command line: the `bundler` group, its error handling (a BundlerError becomes
`error:` + `hint:` and its exit code), and what every verb group shares."""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from bundler import __version__
from bundler.errors import EXIT_FAILURE, BundlerError
from bundler.units import printable

if TYPE_CHECKING:
    from bundler.kinds.base import Kind

JOBS_HELP = "parallel transfers"


class _Group(click.Group):
    """Turns BundlerError into `error: message` + `hint: ...` and its exit code; -v adds the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {printable(exc.message)}", err=True)  # messages quote bundle content
            if exc.hint:
                click.echo(f"hint: {printable(exc.hint)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader went away (`bundler inspect b.tar | head -1`): end quietly
            silence_stdout()
            ctx.exit(141)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: run again with -v for the traceback, and report it", err=True)
            ctx.exit(EXIT_FAILURE)


# Each command lives in a module of its own family, which imports what it calls at its top; the root
# loads a module only when one of its commands runs (or is asked for help), so a command pays for its
# own pipeline only. The short help shown by `bundler --help` is here, beside where each one lives
# (the first paragraph of its help; tests/unit/test_startup.py checks it against each command's own).
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("bundler.cli.build:build",
              "Collect what PROFILE names (images, charts, Git repositories, updates, artifacts) into one bundle "
              "file, signed with each --key."),
    "diff": ("bundler.cli.review:diff", "What changed from bundle OLD to NEW (bundle files or their manifests)."),
    "fleet": ("bundler.cli.fleet:fleet",
              "The connected side's view of the sites: their signed receipts, and which release each runs."),
    "import": ("bundler.cli.imports:import_",
               "Verify BUNDLE against the site's trust policy, then seed the site: registry, Git server, update "
               "cache."),
    "init": ("bundler.cli.build:init_profile",
             "Write a commented profile to start from: each kind's keys with an example."),
    "inspect": ("bundler.cli.review:inspect",
                "Show what BUNDLE holds (from its manifest; use `verify` to check the bytes): images, charts, Git "
                "refs, updates, artifacts, the parent of a delta and what it requires, created, expires, signers."),
    "keygen": ("bundler.cli.keys:keygen",
               "Make an ECDSA P-256 key pair: PREFIX.key (private) and PREFIX.pub (public)."),
    "publish": ("bundler.cli.publish:publish",
                "Push BUNDLE (a file, or a split bundle's index or any part) to a hub registry as an OCI artifact, "
                "tagged with its version unless the hub names a tag."),
    "sign": ("bundler.cli.review:sign", "Add a signature (a countersignature) to BUNDLE in place."),
    "site": ("bundler.cli.site:site", "Set up and look at a site (the disconnected side)."),
    "verify": ("bundler.cli.review:verify", "Check BUNDLE against a trust policy, exactly, and report."),
}


def _kinds() -> Sequence[Kind]:
    from bundler.kinds import KINDS  # not at the top: `bundler --version` does not pay for them

    return KINDS


class _Root(_Group):
    """The root group: its commands are loaded from their modules when first asked for (COMMANDS).
    What content kinds contribute goes in as the command it belongs to is loaded: their own commands
    (their commands role: `updates` at the top, `windows` under `site client`) and their options to
    `import` and `site init` (their options role: `--force-refs`, `--group`)."""

    _kinds_added = False

    @functools.cached_property
    def _kind_commands(self) -> list[tuple[list[str], click.Command]]:
        return [(where.split(), command) for kind in _kinds() for where, command in kind.commands.commands()]

    def load(self, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, _, attribute = COMMANDS[name][0].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name)
            if name == "import":
                for kind in _kinds():
                    command.params.extend(kind.options.import_options())
            if isinstance(command, click.Group):
                if name == "site":
                    for kind in _kinds():
                        command.commands["init"].params.extend(kind.options.site_init_options())
                for where, added in self._kind_commands:
                    if where[:1] == [name]:
                        _add_under(command, where[1:], added)
        return self.commands.get(name)

    def add_kind_commands(self) -> None:
        if not self._kinds_added:
            self._kinds_added = True
            for where, added in self._kind_commands:
                if not where:
                    _add_under(self, [], added)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            return self.load(cmd_name)
        self.add_kind_commands()  # a kind's own command (`updates`)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_kind_commands()
        return sorted({*self.commands, *COMMANDS})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """`bundler --help`: a command not loaded yet shows its help from COMMANDS."""
        shown: list[tuple[str, click.Command | None]] = [
            (name, command) for name in self.list_commands(ctx)
            if (command := self.commands.get(name)) is None or not command.hidden]
        limit = formatter.width - 6 - max((len(name) for name, _ in shown), default=0)  # as click's own
        rows: list[tuple[str, str]] = []
        for name, command in shown:  # one not loaded yet: its help from COMMANDS, shortened as click does
            rows.append((name, (command or click.Command(name, help=COMMANDS[name][1])).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _add_under(group: click.Group, path: list[str], command: click.Command) -> None:
    """Add a kind's command to `group`'s subgroup at `path` (its own name taken by nobody)."""
    for name in path:
        found = group.commands.get(name)
        if not isinstance(found, click.Group):
            raise TypeError(f"a content kind's command {command.name} goes under {' '.join(path)}, which is no group")
        group = found
    if command.name in group.commands:
        raise TypeError(f"a content kind's command {command.name} takes a name {group.name} has already")
    group.add_command(command)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log details and show tracebacks")
@click.version_option(__version__, prog_name="bundler")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Carry container images, Helm charts, Git repositories, OS/VM updates and OCI artifacts
    (models, any file) across an air gap as one signed, verified bundle file, and serve them on the site.

    \b
    Keys:            bundler keygen release
    Connected side:  bundler build profiles/demo.yaml --key release.key
    Review:          bundler inspect demo-1.0.0.bundle.tar
                     bundler verify demo-1.0.0.bundle.tar --key release.pub
                     bundler sign demo-1.0.0.bundle.tar --key security.key
    Site side:       bundler site init ./site --trust-key release.pub --group line-1
                     bundler site up ./site
                     bundler import demo-1.0.0.bundle.tar --site ./site
    Through a hub:   bundler publish demo-1.0.0.bundle.tar oci://hub.example/edge/demo
                     bundler fleet rollout start demo 1.0.0 --hub oci://hub.example/edge/demo \\
                         --wave canary=store-1 --wave rest='*' --key release.key
                     bundler site sync ./site --hub oci://hub.example/edge/demo --every 15m --service

    Exit codes: 0 ok, 1 failure, 2 usage or profile error, 3 refused by verification,
    4 a source or target could not be reached.
    """
    ctx.meta["verbose"] = verbose
    # configured once: bundler's own warnings reach the user; libraries' (urllib3's "Connection pool
    # is full", Python warnings) only their errors, everything with -v
    logging.basicConfig(level=logging.DEBUG if verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bundler").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)


def silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell's completion script for bundler (click's own).

    \b
    Example:
      eval "$(bundler completion bash)"            # this shell; or, for every new one:
      bundler completion bash > ~/.local/share/bash-completion/completions/bundler
      bundler completion zsh > "${fpath[1]}/_bundler"
      bundler completion fish > ~/.config/fish/completions/bundler.fish
    """
    from click.shell_completion import get_completion_class

    script = get_completion_class(shell)
    assert script is not None  # click ships these three
    click.echo(script(cli, {}, "bundler", "_BUNDLER_COMPLETE").source())
