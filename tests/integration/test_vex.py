"""A VEX document from the profile travels as a referrer of its image: the product team's OpenVEX
statement ("not affected", and why) becomes an artifact whose subject is the image, listed in its
referrers index beside the source's referrers; at the site an in-cluster scanner finds it under the
referrers fallback tag. A file that is not OpenVEX is refused at build, naming it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bundler.oci import media
from bundler.oci.client import RegistryClient
from devtools import images as im
from tests.conftest import Keys, Registry, Run

VEX = {"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://acme.example/vex/pos-1.0",
       "author": "acme security", "timestamp": "2026-12-01T00:00:00Z", "version": 1,
       "statements": [{"vulnerability": {"name": "CVE-2026-12345"}, "products": [{"@id": "pkg:oci/pos"}],
                       "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]}


def test_a_vex_document_travels_as_a_referrer_of_its_image_and_the_site_serves_it(
        cli: Callable[..., Run], keys: Keys, registry_factory: Callable[[], Registry], registry: Registry,
        tmp_path: Path) -> None:
    source = registry_factory()
    digest, _ = im.push_image(RegistryClient(source.host), "team/pos", "1.0", [im.random_layer(50_000, 201)], oci=True)
    (tmp_path / "pos.openvex.json").write_text(json.dumps(VEX))
    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: vex, version: 1.0.0}\n"
                                     f"spec:\n  images:\n    - ref: {source.host}/team/pos:1.0\n"
                                     "      vex: pos.openvex.json\n")
    built = cli("build", tmp_path / "p.yaml", "-o", tmp_path / "v.bundle.tar", "--key", keys.release.key, cwd=tmp_path)
    assert built.code == 0, built.err
    site = tmp_path / "site"
    assert cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub).code == 0
    assert cli("import", tmp_path / "v.bundle.tar", "--site", site).code == 0

    client = RegistryClient(registry.host)
    repo = next(r for r in registry.catalog() if r.endswith("team/pos"))
    index, _, _ = client.get_manifest(repo, f"sha256-{digest[7:]}")  # the referrers fallback tag
    [referrer] = [c for c in media.index_children(index)
                  if (c.raw or {}).get("artifactType") == "application/vnd.openvex+json"]
    manifest = json.loads(client.get_manifest(repo, referrer.digest)[0])
    assert manifest["subject"]["digest"] == digest
    layer = manifest["layers"][0]
    document = bytearray(layer["size"])
    client.fetch_blob(repo, layer["digest"], layer["size"], lambda at, chunk: document.__setitem__(
        slice(at, at + len(chunk)), chunk))
    assert json.loads(bytes(document)) == VEX

    (tmp_path / "bad.json").write_text('{"statements": []}')
    (tmp_path / "q.yaml").write_text((tmp_path / "p.yaml").read_text().replace("pos.openvex.json", "bad.json"))
    refused = cli("build", tmp_path / "q.yaml", "-o", tmp_path / "q.bundle.tar", "--key", keys.release.key,
                  cwd=tmp_path)
    assert refused.code == 2 and "bad.json is not an OpenVEX document" in refused.err, refused.err
