"""Versioned deltas: v2 --since v1 carries only what is new, and a site that has v1 ends identical to
one that imported the full v2; without v1 it is refused before writing; a site receipt works as a parent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bundler.bundle.parent import load_manifest
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.site.tokens import QUARANTINE
from bundler.units import human
from devtools import charts
from devtools import images as im
from devtools.gitrepo import commit, git
from devtools.packages import build_deb
from devtools.samples import push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import split_bundle


@dataclass
class Versions:
    work: Path
    v1: Path
    v2_delta: Path
    v2_full: Path
    refs: list[str]


def profile(work: Path, version: str, refs: list[str], chart_url: str, debs: list[str]) -> Path:
    path = work / f"profile-{version}.yaml"
    images = "".join(f"    - {r}\n" for r in refs)
    updates = "".join(f"    - path: {d}\n      approve: [line-1]\n" for d in debs)
    path.write_text(f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {version}}}\n"
                    f"spec:\n  images:\n{images}  charts:\n    - {{repo: {chart_url}, name: webapp, version: 1.0.0}}\n"
                    f"  repos:\n    - {{url: gitops, name: gitops}}\n  updates:\n{updates}")
    return path


@pytest.fixture(scope="module")
def versions(registry_factory: Callable[[], Registry], keys: Keys,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    work = tmp_path_factory.mktemp("delta")
    source = registry_factory()
    client = RegistryClient(source.host)
    samples = push_samples(client)
    refs = list(samples.refs)
    repo = work / "gitops"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    commit(repo, "one.yaml")
    build_deb(work, "edge-agent")
    chart_dir = work / "charts"
    chart_dir.mkdir()
    charts.write_index(chart_dir, [charts.package(chart_dir, "webapp", "1.0.0")])

    def build(profile_path: Path, output: str, *extra: str) -> Path:
        r = subprocess.run([sys.executable, "-m", "bundler.cli", "build", str(profile_path), "-o", output, "--key",
                            str(keys.release.key), *extra], cwd=work, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return work / output

    with charts.serve(chart_dir) as url:
        v1 = build(profile(work, "1.0.0", refs, url, ["edge-agent_1.0.0_all.deb"]), "v1.bundle.tar")
        # v2: app-a gains a layer, the repository two commits, and one more update
        base, own, extra = im.random_layer(3_000_000, seed=1), im.random_layer(1_000_000, seed=2), \
            im.random_layer(1_500_000, seed=77)
        im.push_image(client, "demo/app-a", "1.0", [base, own, extra])
        commit(repo, "two.yaml")
        commit(repo, "three.yaml")
        build_deb(work, "edge-tools")
        v2 = profile(work, "2.0.0", refs, url, ["edge-agent_1.0.0_all.deb", "edge-tools_1.0.0_all.deb"])
        delta = build(v2, "v2-delta.bundle.tar", "--since", "v1.bundle.tar")
        full = build(v2, "v2-full.bundle.tar")
        yield Versions(work, v1, delta, full, refs)  # the chart repository stays up for the module


def site_view(site: Path, registry: Registry, refs: list[str]) -> dict[str, object]:
    client = RegistryClient(registry.host)
    images = {}
    for ref in refs:
        parsed = ImageReference.parse(ref)
        images[ref] = client.head_manifest(parsed.site_repository, parsed.tag or parsed.digest or "")
    git_refs = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)"],
                              cwd=site / "git" / "gitops.git", capture_output=True, text=True, check=True).stdout
    catalog = json.loads((site / "updates" / "catalog.json").read_text())
    return {"images": images, "chart": client.head_manifest("charts/webapp", "1.0.0"), "git": git_refs,
            "updates": sorted((e["name"], e["sha256"]) for e in catalog)}


def test_a_delta_carries_only_the_new_bytes_and_ends_identical(
        versions: Versions, registry_factory: Callable[[], Registry], keys: Keys, cli: Callable[..., Run],
        tmp_path: Path, make_site: SiteFactory) -> None:
    delta, _ = load_manifest(versions.v2_delta)
    v1, _ = load_manifest(versions.v1)
    assert delta.parent and delta.parent["version"] == "1.0.0" and delta.requires
    new_bytes = sum(e.size for p, e in delta.files.items() if p not in v1.files)
    size = versions.v2_delta.stat().st_size
    assert size <= max(new_bytes * 1.05, new_bytes + (1 << 20)), (size, new_bytes)
    assert size < versions.v2_full.stat().st_size / 3

    upgraded_registry, fresh_registry = registry_factory(), registry_factory()
    upgraded = make_site("upgraded", "--group", "line-1", registry=upgraded_registry.url)
    assert cli("import", versions.v1, "--site", upgraded).code == 0
    r = cli("import", versions.v2_delta, "--site", upgraded)
    assert r.code == 0, r.err
    fresh = make_site("fresh", "--group", "line-1", registry=fresh_registry.url)
    assert cli("import", versions.v2_full, "--site", fresh).code == 0
    assert site_view(upgraded, upgraded_registry, versions.refs) == site_view(fresh, fresh_registry, versions.refs)


def test_a_delta_and_its_full_bundle_are_one_release(
        versions: Versions, registry_factory: Callable[[], Registry], keys: Keys, cli: Callable[..., Run],
        tmp_path: Path, make_site: SiteFactory) -> None:
    delta, delta_digest = load_manifest(versions.v2_delta)
    full, full_digest = load_manifest(versions.v2_full)
    assert delta_digest != full_digest and delta.content_digest == full.content_digest
    assert json.loads(cli("inspect", versions.v2_delta, "--json").out)["content_digest"] == full.content_digest

    def imported(bundle: Path, site: Path) -> dict[str, object]:
        r = cli("import", bundle, "--site", site, "--json")
        assert r.code == 0, r.err
        return dict(json.loads(r.out))

    after_delta = make_site("after-delta", "--group", "line-1", registry=registry_factory().url)
    imported(versions.v1, after_delta)
    imported(versions.v2_delta, after_delta)
    again = imported(versions.v2_full, after_delta)  # nothing is missing: nothing is sent
    assert again["bytes_sent"] == 0 and not any(again["added"].values())  # type: ignore[attr-defined]

    after_full = make_site("after-full", "--group", "line-1", registry=registry_factory().url)
    imported(versions.v1, after_full)
    imported(versions.v2_full, after_full)
    again = imported(versions.v2_delta, after_full)
    assert again["bytes_sent"] == 0 and not any(again["added"].values())  # type: ignore[attr-defined]

    # the same name and version with other content (one update less) is still refused
    other = versions.work / "profile-2.0.0-other.yaml"
    other.write_text((versions.work / "profile-2.0.0.yaml").read_text().replace(
        "    - path: edge-tools_1.0.0_all.deb\n      approve: [line-1]\n", ""))
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", str(other), "-o", "v2-other.bundle.tar",
                            "--key", str(keys.release.key)], cwd=versions.work, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    refused = cli("import", versions.work / "v2-other.bundle.tar", "--site", after_full)
    assert refused.code == 3 and "the same version with different content" in refused.err
    versions_seen = [b["version"] for b in json.loads((after_full / "state.json").read_text())["bundles"]]
    assert versions_seen == ["1.0.0", "2.0.0", "2.0.0"]


def test_a_delta_on_a_site_without_its_base_is_refused_before_writing(
        versions: Versions, registry: Registry, keys: Keys, cli: Callable[..., Run], tmp_path: Path,
        make_site: SiteFactory) -> None:
    site = make_site("site", "--group", "line-1", registry=registry.url)
    refused = cli("import", versions.v2_delta, "--site", site)
    assert refused.code == 3
    assert "this delta builds on store 1.0.0, and the site lacks" in refused.err
    assert "image or chart blobs" in refused.err and "update edge-agent 1.0.0" in refused.err
    assert "import store 1.0.0 first" in refused.err
    assert registry.catalog() == [] and not (site / "state.json").exists()
    assert not list((site / "git").iterdir()) and not list((site / "updates" / "blobs").iterdir())


def test_a_site_receipt_is_a_parent(versions: Versions, registry: Registry, keys: Keys, cli: Callable[..., Run],
                                    tmp_path: Path, make_site: SiteFactory) -> None:
    site = make_site("site", "--group", "line-1", registry=registry.url)
    assert cli("import", versions.v1, "--site", site).code == 0
    receipt = cli("site", "receipt", site)
    assert receipt.code == 0, receipt.err
    (versions.work / "receipt.json").write_text(receipt.out)
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "profile-2.0.0.yaml", "-o", "v2-r.bundle.tar",
                            "--key", str(keys.release.key), "--since", "receipt.json"], cwd=versions.work,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    from_receipt, _ = load_manifest(versions.work / "v2-r.bundle.tar")
    assert from_receipt.parent and "receipt" in from_receipt.parent
    assert (versions.work / "v2-r.bundle.tar").stat().st_size < versions.v2_full.stat().st_size / 3
    imported = cli("import", versions.work / "v2-r.bundle.tar", "--site", site)
    assert imported.code == 0, imported.err
    assert site_view(site, registry, versions.refs)["updates"] == sorted(
        (u.name, u.sha256) for u in load_manifest(versions.v2_full)[0].entries("updates"))

    manifest_only = cli("inspect", versions.v1, "--manifest")
    assert json.loads(manifest_only.out)["version"] == "1.0.0"
    diff = json.loads(cli("diff", versions.v1, versions.v2_full, "--json").out)
    changed = {c["name"] for c in diff["images"]["changed"]}
    assert len(changed) == 1 and "app-a" in next(iter(changed))
    assert diff["updates"]["added"] == ["edge-tools"] and "gitops" in diff["repos"]["changed"]


def test_a_split_bundle_imports_from_its_parts_and_names_a_damaged_one(
        versions: Versions, registry: Registry, keys: Keys, cli: Callable[..., Run], tmp_path: Path,
        make_site: SiteFactory) -> None:
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "profile-2.0.0.yaml", "-o",
                            str(tmp_path / "split.bundle.tar"), "--key", str(keys.release.key), "--split-size", "2M"],
                           cwd=versions.work, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    parts = sorted(tmp_path.glob("split.bundle.tar.part-*"))
    assert len(parts) >= 3 and all(p.stat().st_size <= 2 << 20 for p in parts)
    assert f"split into {len(parts)} parts; the index is split.bundle.tar.parts.json" in built.stdout
    assert re.search(rf"parts\.json \(a bundle of [\d.]+ MiB in {len(parts)} parts\)", built.stdout), built.stdout
    assert not (tmp_path / "split.bundle.tar").exists()
    index = tmp_path / "split.bundle.tar.parts.json"

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for p in [*parts, index]:
        shutil.copy(p, damaged / p.name)
    second = damaged / parts[1].name
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0x01
    second.write_bytes(bytes(data))
    verified = cli("verify", damaged / parts[0].name, "--key", keys.release.pub)
    assert verified.code == 3 and f"part {parts[1].name} is damaged" in verified.err
    site = make_site("site", "--group", "line-1", registry=registry.url)
    refused = cli("import", damaged / index.name, "--site", site)
    assert refused.code == 3 and f"part {parts[1].name} is damaged" in refused.err
    assert registry.catalog() == [] and not (site / "state.json").exists()

    (damaged / parts[2].name).unlink()
    missing = cli("import", damaged / index.name, "--site", site)
    assert missing.code == 3 and f"part {parts[2].name} of this split bundle is missing" in missing.err

    imported = cli("import", index, "--site", site)
    assert imported.code == 0, imported.err
    assert site_view(site, registry, versions.refs)["updates"] == sorted(
        (u.name, u.sha256) for u in load_manifest(versions.v2_full)[0].entries("updates"))


def test_an_import_killed_midway_resumes_without_resending(
        versions: Versions, registry_factory: Callable[[], Registry], keys: Keys, cli: Callable[..., Run],
        tmp_path: Path, skopeo: str, make_site: SiteFactory) -> None:
    manifest, _ = load_manifest(versions.v2_full)
    blobs = {p.split("/")[-1]: e.size for p, e in manifest.files.items() if p.startswith("oci/blobs/")}

    for attempt in range(5):  # each kill must land inside the transfer: a fast import can outrun the polling
        registry = registry_factory()
        site = make_site(f"site-{attempt}", "--group", "line-1", registry=registry.url)
        client = RegistryClient(registry.host)

        def quarantined(client: RegistryClient = client) -> dict[str, int]:  # what has arrived: in the quarantine
            return {d: size for d, size in blobs.items() if client.blob_exists(QUARANTINE, f"sha256:{d}")}

        for more in (1, 2):  # kill -9 at two points of the transfer: after the first blob, then a few more
            seen = len(quarantined())
            proc = subprocess.Popen([sys.executable, "-m", "bundler.cli", "import", str(versions.v2_full), "--site",
                                     str(site), "-j", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while proc.poll() is None and len(quarantined()) < seen + more and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.kill()
            proc.wait()
        if registry.catalog() == [] and not (site / "state.json").exists():
            break  # both kills came during the transfer
    else:
        pytest.fail("in 5 tries no kill landed inside the transfer")
    arrived = sum(quarantined().values())
    assert 0 < arrived < sum(blobs.values())
    assert registry.catalog() == []  # nothing a client can see: no repository, no tag
    assert not (site / "state.json").exists()  # nothing was published: the import never finished
    resumed = cli("import", versions.v2_full, "--site", site, "--json")
    assert resumed.code == 0, resumed.err
    sent = json.loads(resumed.out)["bytes_sent"]
    assert any("resumed an import of this bundle that stopped during transfer" in note
               for note in json.loads(resumed.out)["notes"])
    assert not (site / "run" / "import.journal").exists()
    total = sum(e.size for p, e in manifest.files.items() if p.startswith("oci/blobs/"))
    largest = max(e.size for e in manifest.files.values())
    assert arrived + sent <= total + largest
    for ref in versions.refs:
        parsed = ImageReference.parse(ref)
        name = f"{registry.host}/{parsed.site_repository}" + (f":{parsed.tag}" if parsed.tag else f"@{parsed.digest}")
        inspected = subprocess.run([skopeo, "inspect", "--no-tags", "--tls-verify=false", f"docker://{name}"],
                                   capture_output=True,
                                   text=True)
        assert inspected.returncode == 0, inspected.stderr
    assert site_view(site, registry, versions.refs)["updates"] == sorted(
        (u.name, u.sha256) for u in manifest.entries("updates"))


def test_inspect_shows_a_reviewer_what_they_sign_off(versions: Versions, keys: Keys, cli: Callable[..., Run]) -> None:
    text = cli("inspect", versions.v2_delta, "--key", keys.release.pub)
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0].startswith("store 2.0.0  created ") and "expires never" in lines[0]
    assert any(line.startswith("a delta: builds on store 1.0.0; requires ") for line in lines)
    assert any(line.startswith("signers (`verify` checks them): release (") for line in lines)
    assert any("edge-tools 1.0.0 all (deb, " in line and "pre-approved for line-1" in line for line in lines)
    assert any(line.startswith("content digest  sha256:") for line in lines)
    info = json.loads(cli("inspect", versions.v2_delta, "--json").out)
    manifest, _ = load_manifest(versions.v2_delta)
    assert info["parent"]["version"] == "1.0.0" and info["requires"]["files"] == len(manifest.requires) > 0
    assert info["requires"]["bytes"] == sum(e.size for e in manifest.requires.values())
    assert {u["name"]: u["approve"] for u in info["updates"]} == {"edge-agent": ["line-1"], "edge-tools": ["line-1"]}
    assert info["signer_names"] == {info["signers"][0]: None}  # no --key: key ids only
    assert all("upstream_digest" in i for i in info["images"])


def test_every_command_that_takes_a_bundle_takes_its_parts_index_and_names_what_is_not_one(
        versions: Versions, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    """`build --since` and `diff` take a split bundle's index (or a part) as verify, inspect, import and
    sign do; the file next to an index is named when the whole file is given; a file that is no
    bundle at all is a usage error (exit 2) saying what it is, not a refusal."""
    shutil.copy(versions.v1, tmp_path / "v1.bundle.tar")
    index = split_bundle(tmp_path / "v1.bundle.tar", 1 << 20, load_manifest(versions.v1)[1])  # v1, in parts
    delta = cli("build", versions.work / "profile-2.0.0.yaml", "-o", tmp_path / "v2.bundle.tar", "--since", index,
                cwd=versions.work)
    assert delta.code == 0, delta.err
    made, reference = load_manifest(tmp_path / "v2.bundle.tar")[0], load_manifest(versions.v2_delta)[0]
    left = f"{len(made.requires)} files, {human(sum(e.size for e in made.requires.values()))}, to it"
    assert f"store 2.0.0, a delta on {index} (leaves {left}), " in delta.out, delta.out  # it says it is a delta
    assert made.parent == reference.parent and set(made.files) == set(reference.files)  # as --since the file
    diffed = cli("diff", index, versions.v2_full, "--json")
    assert diffed.code == 0, diffed.err
    assert json.loads(diffed.out) == json.loads(cli("diff", versions.v1, versions.v2_full, "--json").out)

    whole = cli("inspect", tmp_path / "v1.bundle.tar")  # the parts' index is beside it
    assert whole.code == 2 and f"give their index, {index}" in whole.err, whole.err
    (tmp_path / "notes.txt").write_text("not a bundle\n")
    for command in (["inspect"], ["diff", versions.v1], ["verify", "--key", keys.release.pub]):
        wrong = cli(*command, tmp_path / "notes.txt")
        assert wrong.code == 2 and "notes.txt is not a bundle: it is not a tar file" in wrong.err, (command, wrong.err)


def test_bundler_init_writes_a_profile_that_builds_once_its_sources_exist(
        cli: Callable[..., Run], keys: Keys, registry: Registry, tmp_path: Path) -> None:
    """Every kind's section validates as written; with the example's sources made (a Git repository,
    a .deb, a model file, an image on a loopback registry where the example names one), it builds;
    an existing profile is never replaced."""
    from bundler.oci.client import RegistryClient
    from devtools import images as im
    from devtools.gitrepo import new_repo
    from devtools.packages import build_deb

    made = cli("init", tmp_path / "store.yaml", "--kind", "images,repos,updates,artifacts")
    assert made.code == 0, made.err
    text = (tmp_path / "store.yaml").read_text()
    assert "# - docker-daemon:myapp:dev" in text and "charts:" not in text
    new_repo(tmp_path / "gitops", "deploy.yaml")
    (tmp_path / "files").mkdir()
    build_deb(tmp_path / "files", "edge-agent")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx").write_bytes(os.urandom(10_000))
    im.push_image(RegistryClient(registry.host), "team/app", "1.0", [im.random_layer(10_000, 7)])
    (tmp_path / "store.yaml").write_text(text.replace("127.0.0.1:5000", registry.host))  # the example's host
    before = sorted(p.name for p in tmp_path.iterdir())
    dry = cli("build", tmp_path / "store.yaml", "-o", tmp_path / "store.bundle.tar", "--key", keys.release.key,
              "--dry-run")
    assert dry.code == 0, dry.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert "nothing was written" in dry.out and f"{registry.host}/team/app:1.0" in dry.out and "gitops" in dry.out
    said = re.search(r"would write \S+ \(([\d.]+) (KiB|MiB)", dry.out)
    assert said is not None, dry.out
    built = cli("build", tmp_path / "store.yaml", "-o", tmp_path / "store.bundle.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    estimate = float(said.group(1)) * (1 << (10 if said.group(2) == "KiB" else 20))
    actual = (tmp_path / "store.bundle.tar").stat().st_size
    assert abs(estimate - actual) <= actual * 0.01, (estimate, actual)  # within 1% (the printed figure's rounding)
    info = json.loads(cli("inspect", tmp_path / "store.bundle.tar", "--json").out)
    assert (info["name"], len(info["images"]), len(info["repos"]), len(info["updates"]), len(info["artifacts"])) \
        == ("store", 1, 1, 1, 1)

    every = cli("init", tmp_path / "all.yaml")  # charts too: it validates (bundler init checks before it writes)
    assert every.code == 0 and "charts:" in (tmp_path / "all.yaml").read_text()
    again = cli("init", tmp_path / "store.yaml")
    assert again.code == 2 and "never overwrites" in again.err
    assert (tmp_path / "store.yaml").read_text() == text.replace("127.0.0.1:5000", registry.host)
