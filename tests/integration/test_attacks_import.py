"""Each attack bundle is refused by `verify --site` and `import` (exit 3, the cause named), and the
site is exactly as it was: registry catalog, tags, and the site's state file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.attack_cases import CASES, GOOD, KEYS, Attack, policy_keys
from tests.conftest import Registry, Run


@pytest.fixture(scope="module")
def shared_registry(registry_factory: Callable[[], Registry]) -> Registry:
    return registry_factory()  # refusals change nothing, so the cases can share one registry


def snapshot(registry: Registry, site: Path) -> tuple[object, ...]:
    catalog = registry.catalog()
    tags = {repo: requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10).json().get("tags")
            for repo in catalog}
    return catalog, tags, (site / "state.json").read_bytes()


def site_running_good(cli: Callable[..., Run], registry: Registry, directory: Path, trust: list[Path]) -> Path:
    """A site that trusts `trust` (all of them must sign) and already runs good-2.0.0."""
    keys: list[str | Path] = []
    for key in trust:
        keys += ["--trust-key", key]
    assert cli("site", "init", "--as-root", directory, "--registry", registry.url, *keys,
               "--threshold", str(len(trust))).code == 0
    r = cli("import", GOOD, "--site", directory)
    assert r.code == 0, r.err
    return directory


@pytest.mark.parametrize("attack", CASES, ids=str)
def test_attack_is_refused_and_the_site_is_unchanged(attack: Attack, shared_registry: Registry,
                                                    cli: Callable[..., Run], tmp_path: Path) -> None:
    site = site_running_good(cli, shared_registry, tmp_path / "site", policy_keys(attack))
    before = snapshot(shared_registry, site)

    verified = cli("verify", attack.path, "--site", site)
    assert verified.code == 3, verified.out + verified.err
    assert attack.cause in verified.err, verified.err

    imported = cli("import", attack.path, "--site", site)
    assert imported.code == 3, imported.out + imported.err
    assert attack.cause in imported.err and "Traceback" not in imported.err, imported.err

    assert snapshot(shared_registry, site) == before


def test_allow_downgrade_imports_an_older_version_on_purpose(shared_registry: Registry, cli: Callable[..., Run],
                                                             tmp_path: Path) -> None:
    site = site_running_good(cli, shared_registry, tmp_path / "site", [KEYS / "release.pub"])
    older = next(c for c in CASES if c.name == "rollback-older-version")
    r = cli("import", older.path, "--site", site, "--allow-downgrade")
    assert r.code == 0, r.err
    assert "example.test/attack/v1" in shared_registry.catalog()
    assert cli("import", GOOD, "--site", site).code == 0  # the site runs 1.0.0 now: 2.0.0 is an upgrade again
