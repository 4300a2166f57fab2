"""`bundler build` and `bundler init`: a profile into a bundle (or a fleet's deltas), and a profile to start from."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.bundle.parts import Split, parse_size
from bundler.cli.root import JOBS_HELP
from bundler.errors import UsageError
from bundler.kinds import KINDS
from bundler.pipeline.build import BuildOptions, build_bundle, dry_run
from bundler.pipeline.fleet_plan import fleet_build
from bundler.pipeline.scaffold import write_profile
from bundler.units import human


@click.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="bundle file to write (default: NAME-VERSION.bundle.tar in the current directory)")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="private key to sign with (repeatable); password from BUNDLER_KEY_PASSWORD")
@click.option("--since", type=click.Path(dir_okay=False, path_type=Path),
              help="a delta: carry only what PARENT lacks (a bundle, its --manifest, or a site receipt)")
@click.option("--split-size", help="write parts of at most SIZE (4G, 500M, or fat32) and a .parts.json index")
@click.option("--parity", default=0, type=click.IntRange(0, 16), metavar="M",
              help="with --split-size: also write M parity parts (Reed-Solomon): any M parts lost or damaged on "
                   "the way are rebuilt where the set is read")
@click.option("--for-fleet", "fleet_dir", type=click.Path(file_okay=False, path_type=Path),
              help="write the smallest set of deltas that brings every site of this fleet directory to the "
                   "release (one per distinct base, into -o DIRECTORY, default .)")
@click.option("--publish", "hub_url", metavar="oci://HOST/PATH",
              help="with --for-fleet: also publish each delta to this hub, tagged VERSION-for-SITE for each of its "
                   "sites (what `bundler fleet rollout start` looks for)")
@click.option("--hub-credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="the hub account for --publish (JSON: username and password, or token)")
@click.option("--dry-run", "dry", is_flag=True,
              help="resolve every source (tags to digests, chart ranges, Git refs, files) and print what the "
                   "bundle would carry and its size; write nothing")
def build(profile: Path, output: Path | None, jobs: int, keys: tuple[Path, ...], since: Path | None,
          split_size: str | None, parity: int, fleet_dir: Path | None, hub_url: str | None,
          hub_credentials: Path | None, dry: bool) -> None:
    """Collect what PROFILE names (images, charts, Git repositories, updates, artifacts) into one bundle file,
    signed with each --key.

    \b
    Example:
      bundler build profiles/demo.yaml --key release.key -o demo-1.0.0.bundle.tar
      bundler build profiles/demo.yaml --dry-run        # what it would carry, and its size
      bundler build profiles/demo.yaml --key release.key --split-size fat32 --parity 2   # sticks
    """
    if parity and not split_size:
        raise UsageError("--parity M writes parity parts beside the parts: give --split-size too (fat32, say)")
    split = Split(parse_size(split_size), parity) if split_size else None
    if dry:

        if fleet_dir is not None:
            raise UsageError("--dry-run is for one bundle: `bundler fleet plan PROFILE` shows a fleet's")
        seen = dry_run(BuildOptions(profile, output, jobs, keys, since))
        for note in seen.notes:
            click.echo(note)
        delta = f", a delta on {since}" if since is not None else ""
        click.echo(f"would write {seen.output} ({human(seen.size)}, {seen.files} files): {seen.name} {seen.version}"
                   f"{delta}; nothing was written")
        for line in seen.lines:
            click.echo(line)
        return
    if hub_url is not None and fleet_dir is None:
        raise UsageError("--publish is for --for-fleet's deltas; a single bundle: bundler publish BUNDLE HUB")
    if fleet_dir is not None:

        done = fleet_build(BuildOptions(profile, None, jobs, keys, since, split), fleet_dir, output or Path.cwd(),
                           hub_url, hub_credentials)
        for item in done.built:
            click.echo(f"wrote {item.result.path} ({human(item.result.size)}) for {', '.join(item.sites)}")
            if done.hub is not None:
                click.echo(f"published {item.result.path.name} to {done.hub.host}/{done.hub.repository} as "
                           f"{', '.join(item.tags)}")
        if done.current:
            click.echo(f"already at this release: {', '.join(done.current)}")
        return
    result = build_bundle(BuildOptions(profile, output, jobs, keys, since, split))
    for note in result.notes:
        click.echo(note)

    counts = "".join(f"{result.counts[k.key]} {k.title}, " for k in KINDS if result.counts[k.key] or k.always_reported)
    with_parity = f" and {parity} parity parts" if parity else ""
    what = (f"a bundle of {human(result.size)} in {result.parts} parts{with_parity}"
            if result.parts > 1 or parity else human(result.size))
    delta = ""
    if since is not None and result.left_to_parent is not None:
        files, size = result.left_to_parent
        delta = f", a delta on {since} (leaves {files} files, {human(size)}, to it)"
    click.echo(f"wrote {result.path} ({what}): {result.name} {result.version}{delta}, "
               f"{counts}{result.blobs} unique blobs")
    click.echo(f"manifest digest {result.manifest_digest}")
    click.echo(f"signed by {', '.join(k[:12] for k in result.signers)}" if result.signers
               else "unsigned: sites refuse it until someone signs it (`bundler sign`)")


@click.command("init")
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", "kinds", metavar="KIND[,KIND]...", default="",
              help="only these kinds' sections (images, charts, repos, updates, artifacts); default: all")
def init_profile(profile: Path, kinds: str) -> None:
    """Write a commented profile to start from: each kind's keys with an example.

    It validates as it is; change the sources to yours, then `bundler build PROFILE`. An existing
    file is never replaced.

    \b
    Example:
      bundler init store.yaml --kind images,repos,updates
    """
    path = write_profile(profile, [k.strip() for k in kinds.split(",") if k.strip()])
    click.echo(f"wrote {path}: change its sources to yours, then `bundler build {path}`")
