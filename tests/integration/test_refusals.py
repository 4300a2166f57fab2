"""Tampered bundles are refused by verify and import (exit 3, naming the file) and change nothing;
bad input gets a one-line error with the right exit code and leaves no partial bundle behind."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import free_port
from devtools.samples import SampleSet, push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory


@pytest.fixture(scope="module")
def built(registry_factory: Callable[[], Registry], tmp_path_factory: pytest.TempPathFactory,
          keys: Keys) -> tuple[Path, SampleSet]:
    import subprocess
    import sys

    source = registry_factory()
    samples = push_samples(RegistryClient(source.host))
    work = tmp_path_factory.mktemp("built")
    (work / "profile.yaml").write_text(samples.profile())
    subprocess.run([sys.executable, "-m", "bundler.cli", "build", "profile.yaml", "-o", "good.bundle.tar",
                    "--key", str(keys.release.key)], cwd=work, check=True, capture_output=True)
    return work / "good.bundle.tar", samples


def members(bundle: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(bundle) as tar:
        return tar.getmembers()


def largest_blob(bundle: Path) -> tarfile.TarInfo:
    return max((m for m in members(bundle) if m.name.startswith("oci/blobs/")), key=lambda m: m.size)


def smallest_blob(bundle: Path) -> tarfile.TarInfo:
    return min((m for m in members(bundle) if m.name.startswith("oci/blobs/")), key=lambda m: m.size)


def flip_byte(bundle: Path, member: tarfile.TarInfo) -> str:
    with open(bundle, "r+b") as f:
        f.seek(member.offset_data + member.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    return member.name


def rewrite(bundle: Path, drop: str | None = None, add: tuple[str, bytes] | None = None) -> None:
    out = bundle.with_suffix(".new")
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            if m.name != drop:
                dst.addfile(m, src.extractfile(m))
        if add:
            info = tarfile.TarInfo(add[0])
            info.size = len(add[1])
            dst.addfile(info, __import__("io").BytesIO(add[1]))
    out.replace(bundle)


def tamper_layer(bundle: Path) -> str:
    return flip_byte(bundle, largest_blob(bundle))


def tamper_manifest_blob(bundle: Path) -> str:
    return flip_byte(bundle, smallest_blob(bundle))


def delete_file(bundle: Path) -> str:
    name = largest_blob(bundle).name
    rewrite(bundle, drop=name)
    return name


def add_unlisted_file(bundle: Path) -> str:
    rewrite(bundle, add=("oci/blobs/sha256/" + "0" * 64, b"not listed anywhere"))
    return "oci/blobs/sha256/" + "0" * 64


def add_link(bundle: Path) -> str:
    with tarfile.open(bundle, "a") as tar:
        info = tarfile.TarInfo("oci/evil-link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    return "oci/evil-link"


CODES = {"tamper_layer": "digest-mismatch", "tamper_manifest_blob": "digest-mismatch", "delete_file": "missing",
         "add_unlisted_file": "unlisted", "add_link": "not-a-file"}  # what verify --json says, for programs


@pytest.mark.parametrize("tamper", [tamper_layer, tamper_manifest_blob, delete_file, add_unlisted_file, add_link])
def test_tampered_bundle_is_refused_and_changes_nothing(
        tamper: Callable[[Path], str], built: tuple[Path, SampleSet], registry: Registry, keys: Keys,
        cli: Callable[..., Run], tmp_path: Path, make_site: SiteFactory) -> None:
    bundle = tmp_path / "tampered.bundle.tar"
    shutil.copy(built[0], bundle)
    name = tamper(bundle)

    verified = cli("verify", bundle, "--key", keys.release.pub)
    assert verified.code == 3
    assert name in verified.err and "Traceback" not in verified.err

    as_json = json.loads(cli("verify", bundle, "--key", keys.release.pub, "--json").out)
    assert as_json["verified"] is False
    assert {(p["code"], p["subject"]) for p in as_json["problems"]} >= {(CODES[tamper.__name__], name)}

    make_site(registry=registry.url)
    before = registry.catalog()
    imported = cli("import", bundle, "--site", "site")
    assert imported.code == 3, imported.err
    assert name in imported.err and "Traceback" not in imported.err
    assert "copy it again from the source; nothing was changed" in imported.err  # the README's words
    assert registry.catalog() == before
    assert not (tmp_path / "site" / "state.json").exists()


def test_truncated_bundle_is_refused(built: tuple[Path, SampleSet], cli: Callable[..., Run], keys: Keys,
                                     tmp_path: Path) -> None:
    bundle = tmp_path / "cut.bundle.tar"
    data = built[0].read_bytes()
    bundle.write_bytes(data[: len(data) // 2])
    r = cli("verify", bundle, "--key", keys.release.pub)
    assert r.code == 3 and "Traceback" not in r.err


PROFILE_HEAD = "apiVersion: bundler/v1\nkind: Profile\nmetadata:\n  name: bad\n  version: 1.0.0\nspec:\n"


def no_partial_output(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.yaml"]


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[0].startswith("error: ")
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), err
    return lines[0]


def test_typo_in_profile_key(cli: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text(PROFILE_HEAD + "  imagez:\n    - nginx:1.25\n")
    r = cli("build", "profile.yaml")
    assert r.code == 2
    assert "profile.yaml:7: unknown key 'imagez' in spec (did you mean 'images'?)" in one_line_error(r.err)
    no_partial_output(tmp_path)


def test_malformed_reference(cli: Callable[..., Run], tmp_path: Path) -> None:
    images = "  images:\n    - nginx:1.25\n    - 127.0.0.1:5000/Bad/App:1\n"
    (tmp_path / "profile.yaml").write_text(PROFILE_HEAD + images)
    r = cli("build", "profile.yaml")
    assert r.code == 2
    line = one_line_error(r.err)
    assert "profile.yaml:9:" in line and "'Bad/App'" in line
    no_partial_output(tmp_path)


def test_unreachable_source_registry(cli: Callable[..., Run], tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "profile.yaml").write_text(PROFILE_HEAD + f"  images:\n    - {host}/demo/app:1.0\n")
    r = cli("build", "profile.yaml")
    assert r.code == 4
    assert f"cannot reach registry http://{host}" in one_line_error(r.err)
    no_partial_output(tmp_path)


def test_image_that_does_not_exist(built: tuple[Path, SampleSet], cli: Callable[..., Run], tmp_path: Path) -> None:
    host = built[1].host
    (tmp_path / "profile.yaml").write_text(
        PROFILE_HEAD + f"  images:\n    - {host}/demo/hello:1.0\n    - {host}/demo/nothing-here:9.9\n")
    r = cli("build", "profile.yaml")
    assert r.code == 1
    assert f"{host}/demo/nothing-here:9.9 not found" in one_line_error(r.err)
    no_partial_output(tmp_path)


def test_failure_mid_transfer_leaves_no_partial_bundle(built: tuple[Path, SampleSet], registry: Registry,
                                                        cli: Callable[..., Run], tmp_path: Path) -> None:
    """A blob the registry lost (manifest still there): the build fails cleanly, nothing left."""
    samples = push_samples(RegistryClient(registry.host))
    ref = next(r for r in samples.refs if "app-a" in r)
    manifest = json.loads(RegistryClient(registry.host).get_manifest("demo/app-a", "1.0")[0])
    layer = manifest["layers"][-1]["digest"]
    import requests

    assert requests.delete(f"{registry.url}/v2/demo/app-a/blobs/{layer}", timeout=10).status_code == 202
    (tmp_path / "profile.yaml").write_text(PROFILE_HEAD + f"  images:\n    - {ref}\n")
    r = cli("build", "profile.yaml")
    assert r.code == 1
    assert layer in one_line_error(r.err)
    no_partial_output(tmp_path)


def test_import_into_a_directory_that_is_not_a_site(built: tuple[Path, SampleSet], cli: Callable[..., Run]) -> None:
    r = cli("import", built[0], "--site", "nowhere")
    assert r.code == 2 and "is not a site" in one_line_error(r.err)


def test_import_when_the_site_registry_is_down(built: tuple[Path, SampleSet], cli: Callable[..., Run],
                                               keys: Keys, make_site: SiteFactory) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    make_site(registry=down)
    r = cli("import", built[0], "--site", "site")
    assert r.code == 4 and "cannot reach registry" in one_line_error(r.err)


def test_tampered_copy_of_an_imported_bundle_sends_nothing_and_is_refused_once_needed(
        built: tuple[Path, SampleSet], registry: Registry, cli: Callable[..., Run], keys: Keys,
        tmp_path: Path, make_site: SiteFactory) -> None:
    make_site(registry=registry.url)
    assert cli("import", built[0], "--site", "site").code == 0
    bundle = tmp_path / "tampered.bundle.tar"
    shutil.copy(built[0], bundle)
    tamper_layer(bundle)
    # the site holds this exact bundle.json and every image: a no-op that reads (and sends) nothing
    again = cli("import", bundle, "--site", "site", "--json")
    assert again.code == 0 and json.loads(again.out)["bytes_sent"] == 0
    # once the registry lacks something, the payload must be read, and the tampered copy is refused
    hello = next(r for r in built[1].refs if "hello" in r)
    repo = "127.0.0.1_" + hello.split(":", 1)[1].split("/", 1)[0] + "/demo/hello"
    import requests

    digest = built[1].refs[hello]
    assert requests.delete(f"{registry.url}/v2/{repo}/manifests/{digest}", timeout=10).status_code == 202
    before = registry.catalog()
    refused = cli("import", bundle, "--site", "site")
    assert refused.code == 3 and "refused" in refused.err
    assert registry.catalog() == before


def test_a_tampered_layer_is_refused_by_the_default_site_and_nothing_shows(
        built: tuple[Path, SampleSet], cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> None:
    """On the default site the registry hashes what it receives (bundler does not hash it a second
    time): a changed layer is refused all the same, naming the file, and no repository appears."""
    from bundler.oci.client import Credentials
    from bundler.site.tokens import QUARANTINE

    bundle = tmp_path / "tampered.bundle.tar"
    shutil.copy(built[0], bundle)
    name = tamper_layer(bundle)
    site = tmp_path / "site"
    registry = f"127.0.0.1:{free_port()}"
    assert cli("site", "init", "--as-root", site, "--trust-key", keys.release.pub, "--registry-listen", registry,
               "--http-listen", f"127.0.0.1:{free_port()}").code == 0
    try:
        assert cli("site", "up", site).code == 0
        refused = cli("import", bundle, "--site", site)
        assert refused.code == 3, refused.err
        assert name in refused.err and "refused" in refused.err and "Traceback" not in refused.err
        account = json.loads((site / "import-credentials.json").read_text())
        client = RegistryClient(registry, plain_http=False, ca_file=str(site / "pki" / "ca.pem"),
                                credentials=Credentials(account["username"], account["password"]))
        catalog = client.request("GET", "/v2/_catalog", repo="").json()["repositories"] or []
        assert [repo for repo in catalog if repo != QUARANTINE] == []
        assert not (site / "state.json").exists()
        assert cli("import", built[0], "--site", site).code == 0  # the good copy then imports
    finally:
        cli("site", "down", site)
