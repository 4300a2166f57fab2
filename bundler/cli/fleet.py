"""`bundler fleet ...`: the connected side's view of many sites."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from bundler.errors import UsageError
from bundler.fleet.report import disk_percent, fleet_page
from bundler.fleet.rollout import Rollout
from bundler.fleet.status import status_of
from bundler.fleet.store import Fleet
from bundler.fsutil import atomic_write
from bundler.keyfiles import load_signing_key
from bundler.pipeline import rollout as control
from bundler.pipeline.fleet_plan import Needs, plan_release
from bundler.pipeline.hub import Hub
from bundler.pipeline.rollout import WaveProgress
from bundler.pipeline.rollout import as_json as doc
from bundler.profile import parse_duration
from bundler.units import emit_json, human, interval, printable

F = TypeVar("F", bound=Callable[..., object])


@click.group()
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
    plan = plan_release(release, fleet_dir)
    if as_json:
        emit_json(plan.to_dict())
        return
    if not plan.sites:
        click.echo(f"the fleet {fleet_dir} holds no site yet: nothing to plan for {plan.name} {plan.version}",
                   err=True)
        click.echo("hint: add each site's receipt first: `bundler fleet add RECEIPT...`", err=True)
    for row in plan.sites:
        needs = {Needs.NOTHING: "runs it already", Needs.FULL: "a full bundle",
                 Needs.DELTA: f"a delta on {row.base}"}[row.needs]
        click.echo(f"{printable(row.site)}: {needs} ({human(row.bytes)})")


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
    status = status_of(Fleet(fleet_dir))
    if html_file is not None:
        atomic_write(html_file, fleet_page(status))
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        emit_json(status.to_dict())
        return
    click.echo(printable(status.versions_line()))
    for line in (line for r in status.rollouts for line in r.lines()):
        click.echo(printable(line))
    bundles = status.bundles
    click.echo("site".ljust(20) + "".join(b.ljust(14) for b in bundles) + "receipt age  disk  problems / clients")
    for s in status.sites:
        versions = "".join(printable(s.running.get(b, "-")).ljust(14) for b in bundles)
        age = f"{s.receipt_age_hours:>8.1f} h" if s.receipt_age_hours is not None else "       - h"
        said = "; ".join(printable(line) for line in [*s.problems, *s.client_lines()]) or "none"
        click.echo(printable(s.site).ljust(20) + versions + f"{age}  {disk_percent(s):>4}  {said}")


@fleet.group("rollout")
def rollout() -> None:
    """Roll a release out to the sites through a hub registry, in waves.

    \b
    Workflow (the bundles published first with `bundler publish`, deltas tagged VERSION-for-SITE):
      bundler fleet rollout start store 1.5.0 --hub oci://harbor.example/edge/store \\
          --wave canary=store-1,store-2 --wave rest='*' --key release.key
      bundler fleet rollout advance store --hub ... --key release.key   # from cron: next wave when healthy
      bundler fleet rollout resume store --hub ... --key release.key    # after a failure is fixed
    Each site runs `bundler site sync DIR --hub ...` on its own schedule.
    """


def _hub_options(f: F) -> F:
    for option in reversed([
        click.option("--hub", "hub_url", required=True, metavar="oci://HOST/PATH", help="the hub"),
        click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
                     help="the hub account (JSON: username and password, or token)"),
        click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), help="the CA of the hub's certificate"),
        FLEET_OPTION,
    ]):
        f = option(f)
    return f


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")
KEY_OPTION = click.option("--key", "keys", multiple=True, required=True,
                          type=click.Path(dir_okay=False, path_type=Path),
                          help="a release key to sign the rollout with (repeatable: as many as the sites' threshold)")


def _show(rollout: Rollout, waves: list[WaveProgress], as_json: bool) -> None:
    if as_json:
        emit_json(doc(rollout, waves))
        return
    state = rollout.state + (f" ({rollout.reason})" if rollout.reason else "")
    click.echo(f"rollout {rollout.name} {rollout.version} serial {rollout.serial}: {state}; "
               f"{rollout.open} of {len(rollout.waves)} waves open; expires {rollout.expires}")
    for wave in waves:
        click.echo(f"  wave {wave.name} ({'open' if wave.open else 'closed'}): {wave.count('done')} done, "
                   f"{wave.count('failed')} failed, {wave.count('pending')} pending")
        for site in wave.sites:
            if site.state == "failed":
                click.echo(f"    {site.site}: failed: {printable(site.message)}")


@rollout.command("start")
@click.argument("name")
@click.argument("version")
@_hub_options
@click.option("--wave", "waves", multiple=True, required=True, metavar="NAME=SITE[,SITE]...",
              help="a wave and its sites (names or globs; '*' every site not in an earlier wave), in order")
@KEY_OPTION
@click.option("--expires", default="14d", show_default=True, help="sites refuse the rollout after this (e.g. 7d, 36h)")
@JSON_OPTION
def rollout_start(name: str, version: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path,
                  waves: tuple[str, ...], keys: tuple[Path, ...], expires: str, as_json: bool) -> None:
    """Name the bundles published for NAME VERSION on the hub and open the first wave."""
    hub = Hub.parse(hub_url)
    client = hub.client(credentials, ca)
    fleet = Fleet(fleet_dir)
    started = control.start(fleet, client, hub, name, version, control.parse_waves(waves),
                            [load_signing_key(k) for k in keys], parse_duration(expires))
    _show(started, control.progress(fleet, client, hub, started), as_json)


def _act(name: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path, as_json: bool,
         action: str, keys: tuple[Path, ...] = (), quiet: bool = False) -> tuple[Rollout, list[WaveProgress]]:
    hub = Hub.parse(hub_url)
    client = hub.client(credentials, ca)
    fleet = Fleet(fleet_dir)
    current = control.load(fleet, name)
    signing_keys = [load_signing_key(k) for k in keys]
    if action in ("advance", "open-next"):
        current, waves = control.advance(fleet, client, hub, current, signing_keys, by_hand=action == "open-next")
    else:
        if action in ("resume", "abort"):
            current = control.set_state(fleet, client, hub, current, "running" if action == "resume" else "aborted",
                                        signing_keys, "aborted by hand" if action == "abort" else "")
        waves = control.progress(fleet, client, hub, current)
    if not quiet:
        _show(current, waves, as_json)
    return current, waves



@rollout.command("status")
@click.argument("name")
@_hub_options
@JSON_OPTION
def rollout_status(name: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path,
                   as_json: bool) -> None:
    """Show each wave's sites: done, failed (with the site's reason), pending."""
    _act(name, hub_url, credentials, ca, fleet_dir, as_json, "status")


@rollout.command("advance")
@click.argument("name")
@_hub_options
@KEY_OPTION
@click.option("--every", metavar="INTERVAL", help="look again every INTERVAL (10s, 5m) until the rollout is done, "
                                                 "stopped or aborted")
@click.option("--open-next", is_flag=True, help="open the next wave now, whatever the open ones' state (by hand)")
@JSON_OPTION
def rollout_advance(name: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path,
                    keys: tuple[Path, ...], every: str | None, open_next: bool, as_json: bool) -> None:
    """Stop the rollout if a site of an open wave failed; open the next wave once every site of the
    open ones is done (or now, with --open-next). Run it from cron, or with --every."""
    import time


    if open_next and every:
        raise UsageError("--open-next opens one wave now; --every waits for the waves: give one of them")
    if every is None:
        _act(name, hub_url, credentials, ca, fleet_dir, as_json, "open-next" if open_next else "advance", keys)
        return
    try:
        pause = interval(every)
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None
    shown = None
    while True:
        current, waves = _act(name, hub_url, credentials, ca, fleet_dir, as_json, "advance", keys, quiet=True)
        summary = (current.serial, tuple((w.count("done"), w.count("failed")) for w in waves))
        if summary != shown:
            _show(current, waves, as_json)
            shown = summary
        if current.state != "running" or (current.open == len(current.waves) and
                                          all(s.state == "done" for w in waves for s in w.sites)):
            return
        time.sleep(pause)


@rollout.command("resume")
@click.argument("name")
@_hub_options
@KEY_OPTION
@JSON_OPTION
def rollout_resume(name: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path,
                   keys: tuple[Path, ...], as_json: bool) -> None:
    """Run the stopped rollout again (once the failure is fixed): failed sites retry at their next sync."""
    _act(name, hub_url, credentials, ca, fleet_dir, as_json, "resume", keys)


@rollout.command("abort")
@click.argument("name")
@_hub_options
@KEY_OPTION
@JSON_OPTION
def rollout_abort(name: str, hub_url: str, credentials: Path | None, ca: Path | None, fleet_dir: Path,
                  keys: tuple[Path, ...], as_json: bool) -> None:
    """Stop the rollout for good: no site takes its bundle any more."""
    _act(name, hub_url, credentials, ca, fleet_dir, as_json, "abort", keys)
