"""`bundler site init --image-key --image-identity --trusted-root --image-scope`: the site's own image policy."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.kinds.base import Options


class ImageOptions(Options):
    def site_init_options(self) -> list[click.Option]:
        return [click.Option(["--image-key", "image_keys"], multiple=True,
                             type=click.Path(dir_okay=False, path_type=Path),
                             help="a cosign public key (repeatable): images in --image-scope must carry a valid "
                                  "signature by one"),
                click.Option(["--image-identity", "image_identities"], multiple=True, metavar="ISSUER=SUBJECT",
                             help="a keyless signer (repeatable): the OIDC issuer and a regular expression for the "
                                  "certificate's subject; images in --image-scope may carry a Sigstore signature by "
                                  "one instead"),
                click.Option(["--trusted-root", "trusted_root"], type=click.Path(dir_okay=False, path_type=Path),
                             help="the Sigstore trusted_root.json keyless signatures are judged against (pinned: "
                                  "copied into the site; a signed bundle may carry the next one)"),
                click.Option(["--require-provenance", "require_provenance"], metavar="BUILDER_REGEXP",
                             help="images in --image-scope must also carry SLSA provenance (v1) signed by the image "
                                  "keys or identities, from a builder this regular expression matches"),
                click.Option(["--image-scope", "image_scopes"], multiple=True, metavar="GLOB",
                             help="images the image keys and identities cover, by name (registry.example.com/team/*; "
                                  "repeatable; default *)")]
