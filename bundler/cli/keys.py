"""`bundler keygen`: a key pair to sign releases with."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.keyfiles import keygen as make_keys


@click.command()
@click.argument("prefix", type=click.Path(dir_okay=False, path_type=Path))
def keygen(prefix: Path) -> None:
    """Make an ECDSA P-256 key pair: PREFIX.key (private) and PREFIX.pub (public).

    The private key is encrypted when BUNDLER_KEY_PASSWORD is set. Existing files are never
    overwritten. The key id is the hex SHA-256 of the public key (DER).

    \b
    Example:
      BUNDLER_KEY_PASSWORD=... bundler keygen release
    """
    key_path, pub_path, keyid = make_keys(prefix)
    click.echo(f"wrote {key_path} (keep it secret) and {pub_path}; key id {keyid}")
