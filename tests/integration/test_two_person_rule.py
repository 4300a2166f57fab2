"""Two-person rule end to end: release engineering builds and signs, the site needs security too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bundler.oci.client import RegistryClient
from devtools.samples import push_samples
from tests.conftest import Keys, Registry, Run


def test_release_alone_is_refused_and_a_countersignature_admits_it(
        cli: Callable[..., Run], registry_factory: Callable[[], Registry], keys: Keys, tmp_path: Path) -> None:
    source, site = registry_factory(), registry_factory()
    samples = push_samples(RegistryClient(source.host))
    (tmp_path / "profile.yaml").write_text(samples.profile())
    assert cli("build", "profile.yaml", "-o", "b.bundle.tar", "--key", keys.release.key).code == 0
    init = cli("site", "init", "site", "--registry", site.url, "--trust-key", keys.release.pub,
               "--trust-key", keys.security.pub, "--threshold", "2")
    assert init.code == 0, init.err

    refused = cli("import", "b.bundle.tar", "--site", "site")
    assert refused.code == 3 and "the policy needs 2 of: release, security" in refused.err
    assert site.catalog() == [] and not (tmp_path / "site" / "state.json").exists()

    assert cli("sign", "b.bundle.tar", "--key", keys.security.key).code == 0
    imported = cli("import", "b.bundle.tar", "--site", "site", "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["images"] == len(samples.refs)
    status = json.loads(cli("site", "status", "site", "--json").out)
    assert len(status["bundles"]) == 1 and len(status["bundles"][0]["signers"]) == 2
