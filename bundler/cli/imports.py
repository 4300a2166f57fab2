"""`bundler import`: a verified bundle into a site."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.cli.root import JOBS_HELP
from bundler.kinds import KINDS
from bundler.pipeline.importer import ImportOptions, import_bundle
from bundler.progress import report_as_json
from bundler.units import emit_json, human


@click.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the site directory (made by `bundler site init`)")
@click.option("--json", "as_json", is_flag=True,
              help="print the result as JSON, with each phase's bytes and seconds (progress: JSON lines on stderr)")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
@click.option("--allow-downgrade", is_flag=True,
              help="accept a version older than the one the site runs (rolling back on purpose)")
@click.option("--dry-run", is_flag=True, help="verify everything and print what would change; change nothing")
def import_(bundle: Path, site_dir: Path, as_json: bool, jobs: int, allow_downgrade: bool, dry_run: bool,
            **kind_options: object) -> None:
    """Verify BUNDLE against the site's trust policy, then seed the site: registry, Git server, update cache.

    Refused (exit 3, nothing changed) unless enough trusted keys signed it, it has not expired, it
    is not older than what the site runs, and every byte matches. Images and artifacts keep their
    digests and tags under <source host>/<path> (a port becomes _PORT); charts go under the chart
    prefix. Importing the same bundle again is a no-op, unless the site lost part of it: into the
    default site, a layer cut short or missing is written again.

    \b
    Example:
      bundler import demo-1.0.0.bundle.tar --site ./site
    """
    if as_json:
        report_as_json()
    by_kind = {kind.key: {name: kind_options[name] for option in kind.options.import_options()
                          if (name := option.name)}
               for kind in KINDS}  # the kinds' own options (their commands role's import_options: --force-refs)
    result = import_bundle(ImportOptions(bundle, site_dir, jobs, allow_downgrade, by_kind, dry_run))
    for note in result.notes if not as_json else ():  # with --json: in the result, stderr holds JSON lines
        click.echo(note, err=True)
    if as_json:
        emit_json(result.to_dict())
    elif result.plan is not None:
        click.echo(f"{result.name} {result.version} verified; importing it would (nothing was changed):")
        for line in result.plan.lines():
            click.echo(line)
    elif result.already_imported:
        click.echo(f"{result.name} {result.version} is already imported and every image is present; nothing to do "
                   "(payloads not re-read: `bundler verify` checks this copy)")
    else:
        click.echo(f"imported {result.name} {result.version}: "
                   + "".join(kind.report.import_summary(result.added, result.unchanged) for kind in KINDS)
                   + f"{result.added['blobs']} blobs added, {result.unchanged['blobs']} already there; "
                   f"{human(result.bytes_sent)} sent")
