"""`bundler publish`: a bundle to a hub registry, as an OCI artifact."""

from __future__ import annotations

from pathlib import Path

import click

import bundler.kinds  # noqa: F401 - the format reads bundle.json's entries through them
from bundler.bundle.parts import parse_size
from bundler.errors import UsageError
from bundler.pipeline.hub import Hub
from bundler.pipeline.hub import publish as push
from bundler.units import emit_json, human

HUB_CREDENTIALS = click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
                               help='the hub account: a JSON file {"username": ..., "password": ...} or {"token": ...} '
                                    "(default: the Docker config's credentials for the hub)")
HUB_CA = click.option("--ca", type=click.Path(dir_okay=False, path_type=Path),
                      help="the CA that signed the hub's certificate (default: the system's)")


@click.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("hub", metavar="oci://HOST/PATH[:TAG]")
@HUB_CREDENTIALS
@HUB_CA
@click.option("--layer-size", default="16M", show_default=True,
              help="cut the bundle into layers of at most SIZE (downloads resume and run in parallel per layer)")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel uploads")
@click.option("--tag", "tags", multiple=True,
              help="tag it so (repeatable: one upload, several tags, e.g. a delta's VERSION-for-SITE for each site)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def publish(bundle: Path, hub: str, credentials: Path | None, ca: Path | None, layer_size: str, jobs: int,
            tags: tuple[str, ...], as_json: bool) -> None:
    """Push BUNDLE (a file, or a split bundle's index or any part) to a hub registry as an OCI artifact,
    tagged with its version unless the hub names a tag. Sites take it from there with `bundler site
    sync` once a rollout names it (`bundler fleet rollout start`). The hub is trusted with nothing:
    sites verify the bundle's signatures as for a USB import.

    \b
    Example:
      bundler publish store-1.5.0.bundle.tar oci://harbor.example/edge/store
    """
    target = Hub.parse(hub)
    if tags and target.tag:
        raise UsageError(f"{hub} names a tag already: give the tags either there or with --tag")
    done = push(bundle, target, target.client(credentials, ca, jobs), parse_size(layer_size), jobs, tags)
    if as_json:
        emit_json({"hub": str(target), "tag": done.tag, "tags": list(tags) or [done.tag], "digest": done.digest,
                   "size": done.size, "layers": done.layers, "name": done.name, "version": done.version,
                   "manifest_digest": done.manifest_digest})
        return
    click.echo(f"published {done.name} {done.version} to {target.host}/{target.repository}:{done.tag} "
               f"({human(done.size)} in {done.layers} layers); artifact digest {done.digest}")
