"""A content kind from outside bundler: tests/plugins holds `notes_kind`, one package, and one
registration line (an entry point in the `bundler.kinds` group). With it on PYTHONPATH, the real
commands collect a note into a bundle, verify it (a changed note is refused and changes nothing),
import it into a default site, serve it on its own route behind the front, list it in inspect,
`site status` and the status page, and prune what only older releases carried."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import requests

from tests.conftest import Keys, Run, listen_options
from tests.helpers import credentials

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def with_notes(cli: Callable[..., Run]) -> Callable[..., Run]:
    """The CLI with the example kind installed (its package and its dist-info on the path)."""
    path = os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))
    return lambda *args, **kw: cli(*args, env={"PYTHONPATH": path}, **kw)


def release(run: Callable[..., Run], tmp_path: Path, keys: Keys, version: str, text: str) -> Path:
    (tmp_path / f"motd-{version}.txt").write_text(text)
    (tmp_path / f"store-{version}.yaml").write_text(
        f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {version}}}\n"
        f"spec:\n  notes:\n    - name: motd\n      path: motd-{version}.txt\n")
    out = tmp_path / f"store-{version}.bundle.tar"
    built = run("build", tmp_path / f"store-{version}.yaml", "-o", out, "--key", keys.release.key)
    assert built.code == 0, built.err
    return out


def test_a_kind_registered_from_outside_is_built_verified_imported_served_reported_and_pruned(
        cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> None:
    run = with_notes(cli)
    first = release(run, tmp_path, keys, "1.0.0", "doors open at 8\n")
    second = release(run, tmp_path, keys, "1.1.0", "doors open at 7\n")

    # without the kind installed the profile's key is unknown: nothing is built
    plain = cli("build", tmp_path / "store-1.0.0.yaml", "-o", tmp_path / "x.tar", "--key", keys.release.key)
    assert plain.code != 0 and "notes" in plain.err and not (tmp_path / "x.tar").exists()

    inspected = json.loads(run("inspect", first, "--json").out)
    assert [n["name"] for n in inspected["notes"]] == ["motd"]
    assert "notes (1):" in run("inspect", first).out
    assert run("verify", first, "--key", keys.release.pub).code == 0

    # a note changed after signing: refused by verify and by import
    tampered = tmp_path / "tampered.bundle.tar"
    with tarfile.open(first) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.startswith("notes/"):
                data = data.replace(b"8", b"9") if data else data
            dst.addfile(member, None if data is None else io.BytesIO(data))
    assert run("verify", tampered, "--key", keys.release.pub).code != 0

    site = tmp_path / "site"
    made = run("site", "init", "--as-root", site, "--trust-key", keys.release.pub, "--name", "store-7",
               *listen_options())
    assert made.code == 0, made.err
    up = run("site", "up", site)
    assert up.code == 0, up.err
    try:
        refused = run("import", tampered, "--site", site)
        assert refused.code != 0 and not list((site / "notes" / "blobs").iterdir())

        imported = run("import", first, "--site", site, "--json")
        assert imported.code == 0, imported.err
        assert json.loads(imported.out)["added"]["notes"] == 1

        status = json.loads(run("site", "status", site, "--json").out)
        notes = status["services"]["notes"]
        auth, ca = credentials(site), str(site / "pki" / "ca.pem")
        served = requests.get(notes["url"] + "motd", auth=auth, verify=ca, timeout=10)
        assert served.status_code == 200 and served.text == "doors open at 8\n"  # sent by the front
        assert requests.get(notes["url"] + "motd", verify=ca, timeout=10).status_code == 401
        assert requests.get(notes["url"] + "nope", auth=auth, verify=ca, timeout=10).status_code == 404
        assert notes["healthy"] and status["disk"]["notes"] > 0
        assert "notes" in run("site", "status", site).out
        page = requests.get(notes["url"].removesuffix("notes/"), auth=auth, verify=ca, timeout=10).text
        assert "Notes held" in page and "motd" in page and "notes (1):" in page

        assert run("import", second, "--site", site).code == 0
        assert requests.get(notes["url"] + "motd", auth=auth, verify=ca, timeout=10).text == "doors open at 7\n"
        planned = json.loads(run("site", "prune", site, "--keep", "1", "--dry-run", "--json").out)
        old = json.loads(run("inspect", first, "--json").out)["notes"][0]["sha256"]
        assert planned["notes"] == [old[:12]] and planned["bytes_freed"]["notes"] == len("doors open at 8\n")
        assert (site / "notes" / "blobs" / old).exists()  # a dry run changes nothing
        pruned = run("site", "prune", site, "--keep", "1")
        assert pruned.code == 0, pruned.err
        assert not (site / "notes" / "blobs" / old).exists()
        assert requests.get(notes["url"] + "motd", auth=auth, verify=ca, timeout=10).text == "doors open at 7\n"
    finally:
        run("site", "down", site)


def test_a_kind_from_outside_keeps_its_own_section_of_site_yaml(cli: Callable[..., Run], keys: Keys,
                                                                 tmp_path: Path) -> None:
    """Its settings role and its `site init` option (tests/plugins/notes_kind/settings.py, options.py):
    `--public-note motd` writes `notes: {public: [motd]}` into site.yaml, the site reads it back, and
    that note is served without an account while the others still ask for one; a bad name is refused
    naming the option, and no site is made."""
    run = with_notes(cli)
    first = release(run, tmp_path, keys, "1.0.0", "doors open at 8\n")
    bad = run("site", "init", "--as-root", tmp_path / "bad", "--trust-key", keys.release.pub,
              "--public-note", "Not A Name", *listen_options())
    assert bad.code != 0 and "--public-note: 'Not A Name' is not a note name" in bad.err
    assert not (tmp_path / "bad" / "site.yaml").exists()

    site = tmp_path / "site"
    made = run("site", "init", "--as-root", site, "--trust-key", keys.release.pub, "--public-note", "motd",
               *listen_options())
    assert made.code == 0, made.err
    assert "notes:\n  public:\n  - motd\n" in (site / "site.yaml").read_text()
    assert "notes" not in cli("site", "init", "--help").out  # without the kind: no such option
    assert run("site", "up", site).code == 0
    try:
        assert run("import", first, "--site", site).code == 0
        url = json.loads(run("site", "status", site, "--json").out)["services"]["notes"]["url"]
        ca = str(site / "pki" / "ca.pem")
        served = requests.get(url + "motd", verify=ca, timeout=10)  # no account
        assert served.status_code == 200 and served.text == "doors open at 8\n"
        assert served.headers["Content-Type"].startswith("text/plain")
        assert requests.get(url + "other", verify=ca, timeout=10).status_code == 401

        # a field added to the kind's section (notes.contentType): read by the kind alone
        yaml_file = site / "site.yaml"
        yaml_file.write_text(yaml_file.read_text().replace("notes:\n", "notes:\n  contentType: text/markdown\n"))
        assert run("site", "down", site).code == 0 and run("site", "up", site).code == 0  # read again
        assert requests.get(url + "motd", verify=ca, timeout=10).headers["Content-Type"].startswith("text/markdown")
        good = yaml_file.read_text()
        yaml_file.write_text(good.replace("text/markdown", "not a type"))
        wrong = run("site", "status", site)
        yaml_file.write_text(good)  # before `site down`, which reads it too
        assert wrong.code != 0 and "notes.contentType: 'not a type' is not a media type" in wrong.err
    finally:
        assert run("site", "down", site).code == 0  # nothing left running
