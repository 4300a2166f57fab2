"""`bundler site ...`: set up, run, look at and prune a site (the disconnected side)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from bundler.cli.root import JOBS_HELP
from bundler.errors import EXIT_UNREACHABLE, UsageError
from bundler.fsutil import atomic_write
from bundler.kinds import KINDS
from bundler.pipeline.export import export_k3s
from bundler.pipeline.hub import (
    Hub,
    SyncOptions,
    SyncResult,
    Window,
    load_settings,
    parse_rate,
    save_settings,
)
from bundler.pipeline.ownership import hand_over
from bundler.pipeline.prune import prune_site
from bundler.pipeline.receipt import site_receipt as make_receipt
from bundler.pipeline.setup import create_site, start_site
from bundler.pipeline.site_sync import sync_every, sync_once
from bundler.pipeline.status import status_report
from bundler.site.aksee import write_script
from bundler.site.config import load_site
from bundler.site.create import SiteSpec
from bundler.site.service import site_down as down
from bundler.site.service import supervise
from bundler.site.systemd import install_unit
from bundler.units import emit_json, human, interval, printable


@click.group()
def site() -> None:
    """Set up and look at a site (the disconnected side)."""


@site.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--registry", "registry_url",
              help="an existing registry to seed instead of the embedded one, e.g. https://registry.local:5000, "
                   "or with a prefix everything goes under: https://harbor.example/edge")
@click.option("--registry-listen", default="127.0.0.1:5443", show_default=True,
              help="HOST:PORT of the embedded registry (`site up` runs it, with TLS and the site's credentials)")
@click.option("--registry-runtime", type=click.Choice(["auto", "binary", "docker"]), default="auto",
              show_default=True, help="run the embedded registry as the binary, a Docker container, or either")
@click.option("--trust-key", "trust_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a public key whose signature the site accepts (repeatable; copied into DIRECTORY/trust)")
@click.option("--threshold", default=1, show_default=True, type=click.IntRange(1),
              help="how many distinct trusted keys must have signed a bundle")
@click.option("--chart-prefix", default="charts", show_default=True,
              help="registry path charts go under: <registry>/<prefix>/<name>:<version>")
@click.option("--http-listen", default="127.0.0.1:8443", show_default=True,
              help="HOST:PORT of the site's HTTPS service (the Git server)")
@click.option("--hostname", "hostnames", multiple=True, help="a DNS name clients use for the site (certificate)")
@click.option("--ip", "ips", multiple=True, help="an IP address clients use for the site (certificate)")
@click.option("--name", help="the site's name in its receipts and the fleet (default: this host's name)")
@click.option("--registry-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="the CA certificate (PEM) of the --registry URL, when the system does not trust it")
@click.option("--registry-credentials", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help='the --registry URL\'s account: a 0600 JSON file, {"username": ..., "password": ...} '
                   '(a Harbor robot account) or {"token": ...}')
@click.option("--registry-storage", metavar="s3://BUCKET[/PATH]",
              help="keep the site's own registry on object storage (Distribution's s3 driver) instead of its disk")
@click.option("--s3-endpoint", metavar="URL", help="the S3 server (MinIO, Ceph, ...); default AWS")
@click.option("--s3-credentials", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help='the object storage\'s keys: a 0600 JSON file, {"accessKey": ..., "secretKey": ...}')
@click.option("--rewrite", "rewrites", multiple=True, metavar="HOST/*=PATH/*",
              help="put a source registry's images under a path of your own, e.g. 'docker.io/*=hub/*' (repeatable)")
@click.option("--user", metavar="NAME",
              help="as root: the site's own user, made when missing (default bundler-<site name>)")
@click.option("--as-root", is_flag=True,
              help="as root: keep the site root's; its services (every process that reads from the network) "
                   "then run as root")
def site_init(directory: Path, registry_url: str | None, registry_listen: str, registry_runtime: str,
              trust_keys: tuple[Path, ...],
              threshold: int, chart_prefix: str, http_listen: str, hostnames: tuple[str, ...], ips: tuple[str, ...],
              name: str | None, registry_ca: Path | None, registry_credentials: Path | None,
              registry_storage: str | None, s3_endpoint: str | None, s3_credentials: Path | None,
              rewrites: tuple[str, ...], user: str | None, as_root: bool, **kinds: object) -> None:
    """Create a site in DIRECTORY: its registry and its trust policy.

    Run as root, it also gives the site its own unprivileged user (--user; made when missing, as
    `site install` does), and `site up` runs every service as that user: nginx's workers, the
    application and the registry. That user must be able to run bundler where it is installed and
    to reach DIRECTORY: checked first (else an error that says what to do, or --as-root).

    Also its CA, and two accounts: the client account (credentials.json: pull and fetch only, what
    the cluster gets) and the import account (import-credentials.json: push, for `bundler import`).
    By default `site up` runs an embedded registry with TLS and token authentication.

    With --registry URL the site seeds a registry it does not run (Harbor, zot, Distribution on S3):
    a path in the URL is a prefix everything goes under (a Harbor project: https://harbor.example/edge),
    with that registry's CA (--registry-ca) and account (--registry-credentials).

    \b
    Example (two-person rule: release engineering builds, security countersigns):
      bundler site init ./site --registry http://127.0.0.1:5000 \\
          --trust-key release.pub --trust-key security.pub --threshold 2
      bundler site init ./site --trust-key release.pub --image-key cosign.pub --image-scope 'ghcr.io/acme/*'
    """
    spec = SiteSpec(directory, trust_keys, threshold, registry_url, registry_listen=registry_listen,
                    registry_runtime=registry_runtime, chart_prefix=chart_prefix, http_listen=http_listen,
                    hostnames=hostnames, ips=ips, name=name, registry_ca=registry_ca,
                    registry_credentials=registry_credentials, registry_storage=registry_storage,
                    s3_endpoint=s3_endpoint, s3_credentials=s3_credentials,
                    rewrites=[(source, target) for source, _, target in (r.partition("=") for r in rewrites)])
    config = create_site(spec, kinds, user, as_root)  # the kinds' own options (their options role: --group, ...)
    names = ", ".join(name for name, _ in config.trust.keys)
    where = f"{config.registry.url}/{config.registry.prefix}" if config.registry.prefix else config.registry.url
    click.echo(f"site {config.directory} created; images go to {where}; "
               f"bundles need {config.trust.threshold} signature(s) of: {names}")
    click.echo(f"Git server (after `bundler site up`): {config.http_url}/git/<name>.git; "
               f"CA {config.ca_file}; client (pull-only) credentials in {config.credentials_file}")


@site.command("up")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--foreground", is_flag=True,
              help="then stay: watch the services, exit 4 when one stops answering (what `site install` runs)")
@click.option("--wait", type=click.FloatRange(1), default=30.0, show_default=True, metavar="SECONDS",
              help="how long each service may take to answer (a slow disk or a small device may need more)")
@click.option("--check-interval", type=click.FloatRange(0.1), default=5.0, hidden=True)
def site_up(directory: Path, foreground: bool, wait: float, check_interval: float) -> None:
    """Start the site's services in the background: the HTTPS application (the registry's token
    server, Git server, update cache), the embedded registry (token auth), each on a unix socket, and
    in front of both nginx, which holds every port (TLS from the site CA, deadlines, per-client limits).
    On a site with its own user (`site init` as root), every one of them runs as that user.

    Returns once every service answers its health check; logs go to DIRECTORY/logs. If one fails,
    stops what it started and says which and why. Running it again (after a reboot) starts only
    what is not running, and upgrades a site made by an older bundler (a pull-only client account
    that keeps its password, an import account, registry tokens).

    \b
    Example:
      bundler site up ./site
    """
    import signal
    import threading


    stop = threading.Event()
    if foreground:  # a stop (systemctl stop) while the services start: they finish starting, then stop
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    site = start_site(directory, wait)
    if os.geteuid() == 0 and site.directory.stat().st_uid == 0:
        click.echo(f"warning: the site's services run as root (its files are root's): give it its own user with "
                   f"`bundler site install {site.directory}`, or make it again as root without --as-root", err=True)
    services = [f"registry at {site.registry.url}", *(f"{name} at {service.url}" for kind in KINDS
                                                      for name, service in kind.serve.services(site).items())]
    click.echo(f"site {site.directory} is up: {', '.join(services)} "
               f"(CA {site.ca_file}, credentials in {site.credentials_file})")
    if foreground:

        try:
            supervise(directory, stop, check_interval)  # raises (exit 4) when a service stays down
        except KeyboardInterrupt:
            stop.set()
        finally:
            down(directory)


@site.command("install")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default="/etc/systemd/system",
              show_default=True, help="where to write the systemd unit")
@click.option("--user", help="the account the services run as (default bundler-<site name>, made when missing)")
@click.option("--python", "python", type=click.Path(dir_okay=False), default=sys.executable, show_default=True,
              help="the interpreter the unit runs bundler with (the site's user must be able to run it)")
def site_install(directory: Path, unit_dir: Path, user: str | None, python: str) -> None:
    """Write a systemd unit so the site's services start at boot and restart on failure.

    One unit per site name (bundler-site-<name>.service). The services run as the site's own
    unprivileged user (made when missing; it gets the site directory), under systemd's hardening
    (read-only system, private /tmp, no new privileges, the site directory the only place written).
    The unit runs `bundler site up DIRECTORY --foreground` and `site down` to stop.

    \b
    Example:
      bundler site install /srv/site
      systemctl daemon-reload && systemctl enable --now bundler-site-store-7.service
    """
    path = install_unit(directory, unit_dir, user, python)
    click.echo(f"wrote {path}; enable it with: systemctl daemon-reload && systemctl enable --now {path.name}")


@site.command("hand-over")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("subject")
@click.option("--to", "bundle_name", required=True, help="the bundle name that may move SUBJECT from now on")
def site_hand_over(directory: Path, subject: str, bundle_name: str) -> None:
    """Give a name on the site to another bundle name, on purpose.

    Every name a bundle moves on a site (a tag, an image's signature tags, a download by file
    name, a Git repository) belongs to the bundle name that first set it; another name's import is
    refused (name-owned) with SUBJECT as it names it: `files/<name>`, `git/<name>.git` or
    `<repository>:<tag>`. When a product really takes one over (a rename, a merged product), say so
    here; it is recorded in the site's state and `site status --json` lists it (`handovers`).

    \b
    Example:
      bundler site hand-over /srv/site files/firmware.bin --to store-pos
    """
    previous = hand_over(load_site(directory), subject, bundle_name)
    click.echo(f"{printable(subject)} handed over from {printable(previous)} to {bundle_name}")


@site.command("receipt")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write it here (default: stdout)")
def site_receipt(directory: Path, output: Path | None) -> None:
    """Write the site's receipt, signed by the site's key: every release imported (version, content
    digest, signers, when), Git refs, the files it holds, update payloads, what each update client
    lacks, disk use. Carry it back: `bundler fleet add` keeps it, `build --since` builds a delta on it.

    \b
    Example:
      bundler site receipt ./site -o /media/usb/store-7.receipt.json
    """
    text = json.dumps(make_receipt(directory), indent=2, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text.encode())
        click.echo(f"receipt of {directory} written to {output}", err=True)


@site.command("down")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def site_down(directory: Path) -> None:
    """Stop what `site up` started."""
    click.echo(f"site {directory}: {'stopped' if down(directory) else 'was not running'}")


@site.command("prune")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keep", type=click.IntRange(1), help="releases of each bundle name to keep (default: site.yaml's "
              "retention.keep, 3)")
@click.option("--dry-run", is_flag=True, help="print what would go and the bytes it frees; change nothing")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def site_prune(directory: Path, keep: int | None, dry_run: bool, as_json: bool) -> None:
    """Free space: keep the last N releases of each bundle name, remove what only older ones use.

    Removes their images', charts' and artifacts' manifests (never one a kept release names, nor its
    signatures, attestations, SBOMs or referrers), then runs the registry's garbage collector (the
    registry stopped for the pass); update payloads no kept release carries and no group approved;
    what refused or killed imports left. Git history stays. Safe to interrupt (run it again) and on a full disk.

    \b
    Examples:
      bundler site prune ./site --dry-run
      bundler site prune ./site --keep 2
    """
    plan = prune_site(directory, keep, dry_run)
    if as_json:
        emit_json({**plan.to_dict(), "dry_run": dry_run})
        return
    done = "would free" if dry_run else "freed"
    releases = ", ".join(f"{b.name} {b.version}" for b in plan.pruned) or "none"
    click.echo(f"{'would prune' if dry_run else 'pruned'} releases (keeping {plan.keep} of each name): {releases}")
    click.echo(f"  registry: {len(plan.manifests)} manifests, {human(plan.freed['registry'])} of blobs only they use")
    for repo, digest in plan.manifests:
        click.echo(f"    {printable(repo)}@{digest[:19]}")
    for key, part in plan.kinds.items():
        if part.items or part.bytes:
            click.echo(f"  {key}: {len(part.items)} ({human(part.bytes)})" + "".join(f"\n    {printable(item)}"
                                                                                 for item in part.items))
    if plan.leftovers:
        click.echo(f"  left by refused or killed imports: {sum(map(len, plan.leftovers.values()))} files")
    click.echo(f"{done} {human(sum(plan.freed.values()))}" + (" (nothing was changed)" if dry_run else ""))


@site.command("status")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def site_status(directory: Path, as_json: bool) -> None:
    """Show the site's services (URL, health), its CA and credentials files, and what it imported.

    Exits 4 when a service that should run does not answer (the JSON is printed all the same).
    """
    report = status_report(directory)
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
        if report.disk is not None and report.disk.warning:
            click.echo(f"warning: {report.disk.warning}", err=True)
    if not report.healthy:
        if not as_json:
            click.echo(f"hint: start the site's services: bundler site up {directory}", err=True)
        sys.exit(EXIT_UNREACHABLE)


@site.command("sync")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--hub", "hub_url", metavar="oci://HOST/PATH",
              help="the hub the release is published to (default: what --service kept)")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help='this site\'s hub account: {"username": ..., "password": ...} or {"token": ...}')
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), help="the CA of the hub's certificate")
@click.option("--max-rate", metavar="RATE", help="download at most this fast: 2MB/s, 500KB/s, 20Mbit/s")
@click.option("--window", metavar="HH:MM-HH:MM", help="download only between these local times (22:00-05:00)")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel downloads")
@click.option("--every", metavar="INTERVAL", help="sync again every INTERVAL (30s, 15m, 1h) until stopped")
@click.option("--service", is_flag=True,
              help="keep these settings in DIR: `site up` (and so `site install`'s unit) runs the sync every "
                   "--every from now on")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON (one line a sync with --every)")
def site_sync(directory: Path, hub_url: str | None, credentials: Path | None, ca: Path | None,
              max_rate: str | None, window: str | None, jobs: int, every: str | None, service: bool,
              as_json: bool) -> None:
    """Take this site's bundle from the hub, as the signed rollout there says, and import it.

    The rollout must be signed as the site's trust policy requires, never older than one seen
    before, and not expired; the site takes its own delta (else the full bundle) once its wave is
    open, downloads it into DIR/staging resuming where a previous sync stopped, verifies and imports
    it exactly as `bundler import` does, and pushes its signed receipt to the hub. A failure is
    reported to the hub too (the rollout stops until a person resumes it). Run it from cron or a timer.

    \b
    Example:
      bundler site sync /srv/site --hub oci://harbor.example/edge/store --max-rate 2MB/s --window 22:00-05:00
      bundler site sync /srv/site --hub oci://harbor.example/edge/store --every 15m --service  # site up runs it
    """
    try:
        pause = interval(every) if every else None
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None
    if hub_url is None:
        kept = load_settings(directory)
        if kept is None or service:
            raise UsageError("which hub? give --hub oci://HOST/PATH", hint="bundler site sync DIR --hub "
                             "oci://harbor.example/edge/store (add --every 15m --service to keep it running)")
        options, pause = kept
    else:
        options = SyncOptions(directory, Hub.parse(hub_url), credentials, ca,
                              parse_rate(max_rate) if max_rate else None, Window.parse(window) if window else None,
                              jobs)
    if service:
        if pause is None:
            raise UsageError("--service runs the sync every --every: give one (15m, say)")
        kept_in = save_settings(options, pause)
        click.echo(f"kept in {kept_in}: `bundler site up {directory}` runs the sync every {every} from now on "
                   "(run it now to start the sync service; `site down` stops it with the rest)")
        return

    def show(result: SyncResult) -> None:
        if as_json and pause:  # a line a sync
            click.echo(json.dumps(result.to_dict(), sort_keys=True))
        elif as_json:
            emit_json(result.to_dict())
        else:
            rate = f" ({human(result.bytes)} from the hub in {result.download_seconds:.1f} s)" if result.bytes else ""
            click.echo(f"{result.state}: {result.message}{rate}")

    if pause is None:
        show(sync_once(options))
        return
    sync_every(options, pause, show, lambda exc: click.echo(f"failed: {exc}", err=True))


@site.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--k3s", "k3s_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the folder to write the archives and image lists into (copy them to the nodes' agent "
                   "images directory)")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
def site_export(directory: Path, k3s_dir: Path, jobs: int) -> None:
    """Write what K3s and RKE2 nodes preload before the site's registry answers: per release the site
    runs, an OCI archive of its images under their original names (NAME-VERSION.tar) and the image
    list (NAME-VERSION.txt), read from the site's registry with every digest checked.

    \b
    Example (then, on each node):
      bundler site export ./site --k3s ./preload
      cp preload/*.tar /var/lib/rancher/k3s/agent/images/
    """
    for archive in export_k3s(directory, k3s_dir, jobs):
        click.echo(f"wrote {archive} ({human(archive.stat().st_size)}) and {archive.with_suffix('.txt')}")


@site.group("client")
def client() -> None:
    """Scripts for the site's clients: Windows hosts and AKS Edge Essentials nodes."""


@client.command("aksee-trust")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the folder to write bundler-aksee-trust.ps1 into")
def client_aksee_trust(directory: Path, output: Path) -> None:
    """Write a PowerShell script for an AKS Edge Essentials host: puts the site CA into its Linux node's
    trust store, writes containerd's hosts.toml mirrors and K3s's registries.yaml (the site's cluster
    files), restarts containerd (or K3s) through Invoke-AksEdgeNodeCommand, and applies the Flux sources
    and their secrets with kubectl. -Check reports what is missing and changes nothing. The script holds
    the site's pull credentials (mode 0600).

    \b
    Example:
      bundler site client aksee-trust ./site -o ./aksee
    """
    path = write_script(load_site(directory), output)
    click.echo(f"wrote {path} (it holds the site's pull credentials); on the AKS EE host, as administrator:\n"
               f"  powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\\{path.name} -Check")
