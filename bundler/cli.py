"""Command line: parse, call one library function, print. Results on stdout, progress and errors on stderr."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from bundler import __version__
from bundler.errors import EXIT_FAILURE, EXIT_REFUSED, BundlerError

JOBS_HELP = "parallel transfers (default 8)"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


class _Group(click.Group):
    """Turns BundlerError into `error: message` + `hint: ...` and its exit code; -v adds the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: run again with -v for the traceback, and report it", err=True)
            ctx.exit(EXIT_FAILURE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log details and show tracebacks")
@click.version_option(__version__, prog_name="bundler")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Carry container images across an air gap as one verified bundle file.

    \b
    Connected side:  bundler build profiles/demo.yaml
    Review:          bundler inspect demo-1.0.0.bundle.tar
                     bundler verify demo-1.0.0.bundle.tar
    Site side:       bundler site init ./site --registry http://127.0.0.1:5000
                     bundler import demo-1.0.0.bundle.tar --site ./site

    Exit codes: 0 ok, 1 failure, 2 usage or profile error, 3 refused by verification,
    4 a source or target could not be reached.
    """
    ctx.meta["verbose"] = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="bundle file to write (default: NAME-VERSION.bundle.tar in the current directory)")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
def build(profile: Path, output: Path | None, jobs: int) -> None:
    """Collect the images named in PROFILE into one bundle file.

    \b
    Example:
      bundler build profiles/demo.yaml -o demo.bundle.tar
    """
    from bundler.collect.build import BuildOptions, build_bundle

    result = build_bundle(BuildOptions(profile, output, jobs))
    click.echo(f"wrote {result.path} ({_human(result.size)}): {result.name} {result.version}, "
               f"{result.images} images, {result.blobs} unique blobs")
    click.echo(f"manifest digest {result.manifest_digest}")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def inspect(bundle: Path, as_json: bool) -> None:
    """Show what BUNDLE holds (from its manifest; use `verify` to check the bytes).

    \b
    Example:
      bundler inspect demo-1.0.0.bundle.tar --json
    """
    from bundler.bundle.inspect import inspect_bundle

    info = inspect_bundle(bundle)
    if as_json:
        _emit_json(info)
        return
    click.echo(f"{info['name']} {info['version']}  created {info['created']}  {_human(info['size'])}")
    click.echo(f"manifest digest {info['manifest_digest']}")
    click.echo(f"signers: {', '.join(info['signers']) or 'none (unsigned)'}")
    click.echo(f"images ({len(info['images'])}):")
    for image in info["images"]:
        platforms = f"  [{', '.join(image['platforms'])}]" if image["platforms"] else ""
        click.echo(f"  {image['ref']}\n    {image['digest']}{platforms}")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel hashing")
def verify(bundle: Path, as_json: bool, jobs: int) -> None:
    """Check BUNDLE exactly: every listed file present with its size and sha256, nothing else.

    Exits 3 when anything is wrong, naming each file. Signature and trust-policy checks
    (--key, --site) arrive with signing.

    \b
    Example:
      bundler verify demo-1.0.0.bundle.tar
    """
    from bundler.bundle.verify import verify_file

    report = verify_file(str(bundle), jobs)
    if as_json:
        _emit_json({"verified": report.verified, "name": report.name, "version": report.version,
                    "manifest_digest": report.manifest_digest, "threshold": 0, "signers": [],
                    "problems": report.problems})
    elif report.verified:
        click.echo(f"verified: {report.name} {report.version} ({report.manifest_digest}); "
                   "every file matches bundle.json (unsigned: no signature checked)")
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
    if not report.verified:
        if not as_json:
            count = len(report.problems)
            click.echo(f"error: {bundle} failed verification ({count} problem{'s' if count > 1 else ''})", err=True)
        sys.exit(EXIT_REFUSED)


@cli.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the site directory (made by `bundler site init`)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
def import_(bundle: Path, site_dir: Path, as_json: bool, jobs: int) -> None:
    """Verify BUNDLE, then seed the site's registry with its images.

    Nothing is sent unless the whole bundle verifies. Images keep their digests and tags under
    <source host>/<path> (a port becomes _PORT). Importing the same bundle again is a no-op.

    \b
    Example:
      bundler import demo-1.0.0.bundle.tar --site ./site
    """
    from bundler.site.importer import ImportOptions, import_bundle

    result = import_bundle(ImportOptions(bundle, site_dir, jobs))
    if as_json:
        _emit_json(result.to_dict())
    elif result.already_imported:
        click.echo(f"{result.name} {result.version} is already imported and every image is present; nothing to do "
                   "(payloads not re-read: `bundler verify` checks this copy)")
    else:
        click.echo(f"imported {result.name} {result.version}: "
                   f"{result.added['images']} images added, {result.unchanged['images']} unchanged; "
                   f"{result.added['blobs']} blobs added, {result.unchanged['blobs']} already there; "
                   f"{_human(result.bytes_sent)} sent")


@cli.group()
def site() -> None:
    """Set up and look at a site (the disconnected side)."""


@site.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--registry", "registry_url", help="URL of the registry to seed, e.g. https://registry.local:5000")
def site_init(directory: Path, registry_url: str | None) -> None:
    """Create a site configuration in DIRECTORY.

    \b
    Example:
      bundler site init ./site --registry http://127.0.0.1:5000
    """
    from bundler.site.config import init_site

    config = init_site(directory, registry_url)
    click.echo(f"site {config.directory} created; images go to {config.registry_url}")


@site.command("status")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def site_status(directory: Path, as_json: bool) -> None:
    """Show the site's registry (and whether it answers) and the bundles it imported."""
    from bundler.site.status import site_status as status

    info = status(directory)
    if as_json:
        _emit_json(info)
        return
    for name, service in info["services"].items():
        click.echo(f"{name}: {service['url']} ({'healthy' if service['healthy'] else 'NOT answering'})")
    for b in info["bundles"]:
        click.echo(f"imported {b['name']} {b['version']} {b['manifest_digest']} at {b['imported_at']}")


def main() -> None:
    cli(prog_name="bundler")


if __name__ == "__main__":  # pragma: no cover
    main()

