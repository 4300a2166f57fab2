"""`bundler fleet ...`: the connected side's view of many sites."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.cli.root import cli
from bundler.errors import UsageError
from bundler.fsutil import atomic_write
from bundler.units import emit_json, human, printable


@cli.group()
def fleet() -> None:
    """The connected side's view of the sites: their signed receipts, and which release each runs.

    \b
    Workflow: enroll each site's key once (its DIR/site.pub), then add the receipts the technicians
    bring back on the stick (`bundler site receipt DIR -o FILE`), then look:
      bundler fleet enroll store-7.pub
      bundler fleet add /media/usb/*.receipt.json
      bundler fleet status
    """


FLEET_OPTION = click.option("--fleet", "fleet_dir", default="fleet", show_default=True,
                            type=click.Path(file_okay=False, path_type=Path), help="the fleet directory")


@fleet.command("enroll")
@click.argument("pubs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
@click.option("--name", help="the site this key speaks for (one PUB; default: the name in its first receipt)")
def fleet_enroll(pubs: tuple[Path, ...], fleet_dir: Path, name: str | None) -> None:
    """Accept receipts signed by these site keys (each site's DIR/site.pub). A key speaks for one
    site: receipts it signs for another site's name are refused.

    \b
    Example:
      bundler fleet enroll store-7/site.pub --name store-7 --fleet ./fleet
    """
    from bundler.fleet.store import Fleet

    if name is not None and len(pubs) != 1:
        raise UsageError("--name binds one key to one site: give one PUB with it")
    for pub in pubs:
        click.echo(f"enrolled {pub} (key {Fleet(fleet_dir).enroll(pub, name)[:12]})"
                   + (f" for site {name}" if name else ""))


@fleet.command("add")
@click.argument("receipts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
def fleet_add(receipts: tuple[Path, ...], fleet_dir: Path) -> None:
    """Keep the latest receipt of each site, after checking its signature against the enrolled
    site keys (an unknown key or a receipt edited after signing: refused, exit 3)."""
    from bundler.fleet.store import Fleet

    for path in receipts:
        added = Fleet(fleet_dir).add(path)
        state = "kept" if added.kept else "older than the receipt the fleet holds; not kept"
        click.echo(f"site {added.site}: receipt of {added.created} {state}")


@fleet.command("plan")
@click.argument("release", type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def fleet_plan(release: Path, fleet_dir: Path, as_json: bool) -> None:
    """For each site, what it needs of RELEASE (a profile, or a release's full bundle or bundle.json):
    nothing, a delta on its receipt, or everything, and how many bytes; `build --for-fleet` writes them.

    \b
    Example:
      bundler fleet plan profiles/store.yaml --fleet ./fleet
    """
    from bundler.fleet.store import Fleet

    if not fleet_dir.is_dir():
        raise UsageError(f"there is no fleet at {fleet_dir}",
                         hint="`bundler fleet add RECEIPT...` makes it (or give it with --fleet DIR)")
    fleet = Fleet(fleet_dir)
    if release.suffix in (".yaml", ".yml"):  # sources' manifests and sizes are read; nothing is written
        from bundler.pipeline.build import BuildOptions, collecting

        with collecting(BuildOptions(release), Path.cwd()) as collected:
            name, version = collected.profile.name, collected.profile.version
            rows = fleet.plan(name, version, collected.size)
    else:
        from bundler.bundle.parent import load_manifest

        manifest, _ = load_manifest(release)
        name, version = manifest.name, manifest.version
        rows = fleet.plan(name, version, lambda base: sum(e.size for p, e in manifest.files.items()
                                                          if base.files.get(p) != e))
    if as_json:
        emit_json({"name": name, "version": version, "sites": rows})
        return
    if not rows:
        click.echo(f"the fleet {fleet_dir} holds no site yet: nothing to plan for {name} {version}", err=True)
        click.echo("hint: add each site's receipt first: `bundler fleet add RECEIPT...`", err=True)
    for row in rows:
        needs = {"nothing": "runs it already", "full": "a full bundle",
                 "delta": f"a delta on {row.get('base')}"}[row["needs"]]
        click.echo(f"{printable(row['site'])}: {needs} ({human(row['bytes'])})")


@fleet.command("status")
@FLEET_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the status as an HTML page (the site status page's look) to FILE")
def fleet_status(fleet_dir: Path, as_json: bool, html_file: Path | None) -> None:
    """Sites x bundle names: the version each site runs, the age of its receipt, update clients
    lacking approved updates (and Windows clients' failed steps, pending restarts, AKS EE versions),
    disk use.

    \b
    Example:
      bundler fleet status --html fleet.html
    """
    from bundler.fleet.report import client_lines, fleet_page
    from bundler.fleet.store import Fleet

    info = Fleet(fleet_dir).status()
    if html_file is not None:
        atomic_write(html_file, fleet_page(info))
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        emit_json(info)
        return
    bundles = info["bundles"]
    click.echo("site".ljust(20) + "".join(b.ljust(14) for b in bundles) + "receipt age  clients lacking")
    for s in info["sites"]:
        versions = "".join(printable(s["running"].get(b, "-")).ljust(14) for b in bundles)
        lacking = "; ".join(printable(line) for line in client_lines(s)) or "none"
        click.echo(printable(s["site"]).ljust(20) + versions + f"{s['receipt_age_hours']:>8.1f} h  {lacking}")
