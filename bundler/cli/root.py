"""The root of the command line: the `bundler` group, its error handling (a BundlerError becomes
`error:` + `hint:` and its exit code), and what every verb group shares."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click

from bundler import __version__
from bundler.errors import EXIT_FAILURE, BundlerError
from bundler.units import printable

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


class _Root(_Group):
    """The root group: the commands content kinds contribute (their commands role: `updates`) and
    their options to `import` and `site init` (their options role: `--force-refs`, `--group`) are
    added when first asked for, so a command that needs no kind does not import them."""

    _kinds_added = _options_added = False

    def add_kind_commands(self) -> None:
        if self._kinds_added:
            return
        from bundler.kinds import KINDS

        for kind in KINDS:
            for where, command in kind.commands.commands():
                group: click.Command = self
                for name in where.split():
                    group = group.commands[name] if isinstance(group, click.Group) else group
                if not isinstance(group, click.Group) or command.name in group.commands:
                    raise TypeError(f"the {kind.key} kind's command {where} {command.name} cannot be added there")
                group.add_command(command)
            site_init = self.commands["site"]
            if isinstance(site_init, click.Group):
                site_init.commands["init"].params.extend(kind.options.site_init_options())
        self._kinds_added = True

    def add_import_options(self) -> None:
        if self._options_added:
            return
        from bundler.kinds import KINDS

        for kind in KINDS:
            self.commands["import"].params.extend(kind.options.import_options())
        self._options_added = True

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "import":  # kinds add options to it
            self.add_import_options()
        elif cmd_name not in self.commands or cmd_name == "site":  # kinds add commands to these
            self.add_kind_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_kind_commands()
        self.add_import_options()
        return super().list_commands(ctx)



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
    # every command that reads a bundle needs the content kinds registered with the format; imported
    # here, not at the top: importing them takes 0.4 s (measured) `bundler --version` does not pay
    import bundler.kinds  # noqa: F401


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
