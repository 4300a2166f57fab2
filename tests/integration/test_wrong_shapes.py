"""Well-formed JSON of the wrong shape, from a generator: swapped types, missing and extra keys, huge
numbers, odd strings and path-like names, in bundle.json (signed again with the trusted key, so the
parser alone stands guard), in a split bundle's parts index and in a site receipt.

`verify` and `import` end with exit 0 or 3, never 1 (an unexpected exception), and an import that
is refused leaves the site as it was: registry catalog and tags, Git refs, update catalog, state."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundler import signing
from bundler.bundle import layout
from bundler.bundle.manifest import signatures_json
from bundler.bundle.parent import load_manifest, read_parent, receipt
from bundler.cli import cli
from bundler.errors import BundlerError
from bundler.fleet.store import Fleet
from bundler.keyfiles import load_signing_key
from tests.attack_cases import GOOD, KEYS
from tests.conftest import Registry
from tests.helpers import split_bundle

SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "120")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
RELEASE = load_signing_key(KEYS / "release.key")
with tarfile.open(GOOD) as _tar:
    MEMBERS = [(m, _tar.extractfile(m).read()) for m in _tar.getmembers()]  # type: ignore[union-attr]
MANIFEST = json.loads(next(data for m, data in MEMBERS if m.name == layout.MANIFEST))
BLOB = next(iter(MANIFEST["files"]))
# plausible entries of the kinds GOOD lacks, so the generator reaches their fields too
ENTRIES = {
    "charts": {"name": "webapp", "version": "v1.2", "source": "https://charts.example.test", "digest":
               MANIFEST["images"][0]["digest"], "tgz_digest": "", "images": ["example.test/a:1"], "requested": "1.x"},
    "repos": {"name": "config", "url": "https://git.example.test/config", "refs": {"refs/heads/main": "a" * 40},
              "bundle": "git/config.bundle", "prerequisites": []},
    "updates": {"name": "edge-agent", "kind": "deb", "file": "edge-agent_1.0_all.deb", "sha256": "1" * 64,
                "size": 10, "metadata": {"package": "edge-agent", "version": "1.0", "arch": "all",
                                         "control": "Package: edge-agent\nVersion: 1.0\nArchitecture: all"},
                "approve": ["line-1"]},
}
ODD = ["../x", "..", ".", "/etc/passwd", "a/b", "", " ", "x\n", "\x1b[2J", "x" * 300, "refs/heads/../x",
       "sha256:" + "0" * 64, "0" * 64, "-v", "v1.2", "1e999", layout.OCI_BLOBS + "0" * 64, "git/../x.bundle",
       "Package: x\n\nPackage: y", "2026-13-45T99:99:99Z", "é", "\u202e", BLOB]
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 80), 2 ** 80) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ODD) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(ODD) | st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)


def nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a JSON document (the root included)."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from nodes(child, (*path, key))


@st.composite
def wrong_shape(draw: st.DrawFn, document: dict[str, Any], entries: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    for key, entry in (entries or {}).items():
        if draw(st.booleans()):
            doc[key] = [copy.deepcopy(entry)]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in nodes(doc) if p]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(JUNK)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(ODD))] = draw(JUNK)
        else:
            parent.append(draw(JUNK))
    return doc


def resigned_bundle(directory: Path, manifest: dict[str, Any]) -> Path:
    """GOOD with this bundle.json, signed by the key the site trusts; every other member as it was.
    A content_digest left as it was is dropped (it is optional), so that changed content reaches
    the checks after the parser instead of stopping at that digest."""
    if manifest.get("content_digest") == MANIFEST["content_digest"]:
        manifest = {k: v for k, v in manifest.items() if k != "content_digest"}
    data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    path = directory / "case.bundle.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in MEMBERS:
            if info.name == layout.MANIFEST:
                content = data
            elif info.name == layout.SIGNATURES:
                content = signatures_json([signing.sign(RELEASE, data)])
            info = copy.copy(info)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def run(*args: str | Path) -> int:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "unexpected" not in result.output, result.output
    return result.exit_code


def site_view(registry: Registry, site: Path) -> tuple[object, ...]:
    catalog = registry.catalog()
    tags = {repo: requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10).json().get("tags")
            for repo in catalog}
    files = sorted((str(p.relative_to(site)), p.read_bytes() if p.is_file() else b"")
                   for p in site.rglob("*") if not {"logs", "run"} & set(p.relative_to(site).parts)
                   and p.name != "unreferenced.json")  # what a refusal left for a prune: no client sees it
    return catalog, tags, files


@pytest.fixture(scope="module")
def site(registry_factory: Callable[[], Registry], tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Registry, Path]:
    registry = registry_factory()
    directory = tmp_path_factory.mktemp("shapes") / "site"
    assert run("site", "init", "--as-root", directory, "--registry", registry.url, "--trust-key", KEYS / "release.pub",
               "--group", "line-1") == 0
    return registry, directory


@SETTINGS
@given(manifest=wrong_shape(MANIFEST, ENTRIES))
def test_a_bundle_json_of_the_wrong_shape_is_refused_cleanly(manifest: dict[str, Any],
                                                             site: tuple[Registry, Path]) -> None:
    registry, directory = site
    with tempfile.TemporaryDirectory() as scratch:
        bundle = resigned_bundle(Path(scratch), manifest)
        assert run("verify", bundle, "--key", KEYS / "release.pub") in (0, 3)
        before = site_view(registry, directory)
        code = run("import", bundle, "--site", directory)
        assert code in (0, 3)
        if code == 3:
            assert site_view(registry, directory) == before


@pytest.fixture(scope="module")
def split_good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("split")
    shutil.copy(GOOD, directory / "good.bundle.tar")
    return split_bundle(directory / "good.bundle.tar", 4096, load_manifest(GOOD)[1])


@SETTINGS
@given(data=st.data())
def test_a_parts_index_of_the_wrong_shape_is_refused_cleanly(data: st.DataObject, split_good: Path,
                                                            site: tuple[Registry, Path]) -> None:
    registry, directory = site
    index = json.loads(split_good.read_text())
    changed = data.draw(wrong_shape(index))
    with tempfile.TemporaryDirectory() as scratch:
        for part in split_good.parent.glob("good.bundle.tar.part-*"):
            shutil.copy(part, Path(scratch) / part.name)
        (Path(scratch) / split_good.name).write_text(json.dumps(changed))
        assert run("verify", Path(scratch) / split_good.name, "--key", KEYS / "release.pub") in (0, 3)
        before = site_view(registry, directory)
        code = run("import", Path(scratch) / split_good.name, "--site", directory)
        assert code in (0, 3)
        if code == 3:
            assert site_view(registry, directory) == before


RECEIPT = receipt("store-1", "2026-11-28T10:00:00Z", [{"name": "attack", "version": "2.0.0",
                                                       "manifest_digest": "sha256:" + "2" * 64}], [],
                  {"repos": {"config": {"refs/heads/main": "a" * 40}}})
RECEIPT["files"] = {BLOB: MANIFEST["files"][BLOB]}


@SETTINGS
@given(changed=wrong_shape(RECEIPT))
def test_a_site_receipt_of_the_wrong_shape_is_refused_cleanly(changed: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "receipt.json"
        path.write_text(json.dumps(changed))
        try:
            read_parent(path)
        except BundlerError as exc:
            assert exc.exit_code in (2, 3)
        try:  # the fleet reads receipts too (refused here at the latest: no key is enrolled)
            Fleet(Path(scratch) / "fleet").add(path)
        except BundlerError as exc:
            assert exc.exit_code == 3
