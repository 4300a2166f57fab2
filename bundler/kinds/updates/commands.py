"""The updates kind's commands (`bundler updates ...`, added to the command line through
Kind.commands): the update cache's catalog, approvals per group, client enrollment and status."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.kinds.base import Commands
from bundler.kinds.updates.cache import UpdateCache, client_configuration
from bundler.kinds.updates.windows_client import SCRIPT, write_client
from bundler.site.config import load_site
from bundler.units import emit_json, human


@click.group()
def updates() -> None:
    """The site's update cache: what was imported, approvals per group, what clients lack."""


SITE_OPTION = click.option("--site", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="the site directory")


@updates.command("list")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def updates_list(site_dir: Path, as_json: bool) -> None:
    """Every imported update, and the groups it is approved (or declined) for."""
    cache = UpdateCache(load_site(site_dir))
    approvals = cache.catalog.approvals
    decided = [{g: d[e.sha256] for g, d in approvals.items() if e.sha256 in d} for e in cache.catalog.entries]
    if as_json:
        emit_json({"updates": [{"name": e.name, "kind": e.kind, "file": e.file, "version": e.version, "arch": e.arch,
                                "sha256": e.sha256, "size": e.size, "bundle": e.to_dict()["bundle"],
                                "imported_at": e.imported_at, "groups": groups}
                               for e, groups in zip(cache.catalog.entries, decided, strict=True)]})
        return
    for e, groups in zip(cache.catalog.entries, decided, strict=True):
        shown = ", ".join(f"{g}: {d}" for g, d in groups.items()) or "not approved anywhere"
        click.echo(f"{e.name} {e.version} {e.arch} ({e.kind}, {human(e.size)}) {e.sha256[:12]}  [{shown}]")


def _decide(name: str, group: str, site_dir: Path, decision: str) -> None:
    for e in UpdateCache(load_site(site_dir)).decide(name, group, decision):
        click.echo(f"{decision} {e.name} {e.version} ({e.sha256[:12]}) for {group}")


@updates.command("approve")
@click.argument("name")
@click.option("--group", required=True, help="the target group")
@SITE_OPTION
def updates_approve(name: str, group: str, site_dir: Path) -> None:
    """Approve NAME (a name, name=version, file name or sha256 prefix) for a group; republishes.

    \b
    Example:
      bundler updates approve hello-tool --group line-1 --site ./site
    """
    _decide(name, group, site_dir, "approved")


@updates.command("decline")
@click.argument("name")
@click.option("--group", required=True, help="the target group")
@SITE_OPTION
def updates_decline(name: str, group: str, site_dir: Path) -> None:
    """Decline NAME for a group (it leaves the group's repositories; later imports keep the decision)."""
    _decide(name, group, site_dir, "declined")


@updates.command("enroll")
@click.argument("client")
@click.option("--group", required=True, help="the target group the client belongs to")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the token and the configuration as JSON")
def updates_enroll(client: str, group: str, site_dir: Path, as_json: bool) -> None:
    """Enroll update client CLIENT in a group; print its token (shown once; a new enroll replaces it)
    and its configuration: apt (sources and auth.conf), dnf (a .repo file), curl or PowerShell.

    A group is a boundary: a client reads its own group's indexes, approvals and payloads only, and
    reports for itself only. The token goes as `Authorization: Bearer TOKEN`, or as the password of
    user CLIENT (apt's auth.conf, dnf's username/password).

    \b
    Example:
      bundler updates enroll pos-7 --group line-1 --site ./site
    """
    site = load_site(site_dir)
    config = client_configuration(site, client, group, UpdateCache(site).clients.enroll(client, group))
    if as_json:
        emit_json(config.to_dict())
        return
    copy = "".join(f"\n  {source} -> {target}" for source, target in config.copy.items())
    click.echo(f"client {client} enrolled in {group}; its token (shown once): {config.token}\n"
               f"copy to the client:{copy}\n"
               f"apt: /etc/apt/sources.list.d/bundler-site.list:\n  {config.apt_sources}\n"
               f"  /etc/apt/auth.conf.d/bundler-site.conf (mode 0600):\n  {config.apt_auth_conf}\n"
               f"  /etc/apt/apt.conf.d/80bundler-site:\n  {config.apt_ca_conf}\n"
               f"dnf: /etc/yum.repos.d/bundler-site.repo (mode 0600):\n"
               + "".join(f"  {line}\n" for line in config.dnf_repo.splitlines())
               + f"curl: curl --cacert {site.ca_file} -H '{config.http_header}' {config.http_approved}\n"
               f"PowerShell: Invoke-RestMethod -Headers @{{Authorization='Bearer {config.token}'}} "
               f"{config.http_approved}")


@updates.command("status")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def updates_status(site_dir: Path, as_json: bool) -> None:
    """Per client that reported: its group, when it last reported, and the approved updates it lacks;
    for a Windows client also the steps that failed (exit codes), a pending restart, its OS build and
    AKS EE version."""
    cache = UpdateCache(load_site(site_dir))
    clients = cache.clients.status(cache.catalog)
    if as_json:
        emit_json({"clients": [c.to_dict() for c in clients]})
        return
    for c in clients:
        click.echo(c.line())


@click.command("windows")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("client")
@click.option("--group", required=True, help="the target group the client belongs to")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the folder to write the script and its configuration into")
def client_windows(directory: Path, client: str, group: str, output: Path) -> None:
    """Write the Windows update client for CLIENT (enrolled in GROUP; a new token replaces an old one):
    bundler-updates.ps1 (Windows PowerShell 5.1 and PowerShell 7, no module to install) and
    bundler-client.json (mode 0600: the site's URL, its CA pinned by SHA-256, the client's token).

    The script asks the site for the host's plan (approved payloads it lacks, in order), downloads
    with resume, checks SHA-256, installs each with the step for its kind (wusa, DISM, msiexec, an AKS
    EE fragment), reports every result, and stops at a failure or a pending restart. -WhatIf prints
    the plan; -AksEdge stages AKS Edge Essentials fragments and runs the AKS EE update commands.

    \b
    Example:
      bundler site client windows ./site pos-7 --group line-1 -o ./pos-7
    """
    site = load_site(directory)
    script, config = write_client(site, client, group, UpdateCache(site).clients.enroll(client, group), output)
    click.echo(f"client {client} enrolled in {group}; copy {script} and {config} (it holds the token) to the host, "
               f"e.g. C:\\ProgramData\\bundler\\, then run\n"
               f"  powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\bundler\\{SCRIPT} -WhatIf\n"
               f"and as a daily task:\n"
               f"  schtasks /Create /TN bundler-updates /SC DAILY /ST 03:00 /RU SYSTEM /TR "
               f"\"powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\ProgramData\\bundler\\{SCRIPT}\"")


class UpdateCommands(Commands):
    def commands(self) -> list[tuple[str, click.Command]]:
        return [("", updates), ("site client", client_windows)]
