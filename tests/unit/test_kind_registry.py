"""Kinds other packages install register through the `bundler.kinds` entry points: after the
built-in ones, by entry-point name; one that is not a Kind, or takes a key already taken, stops
every command with a message naming the entry point (never a silent second owner of a key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def installed(tmp_path: Path, value: str, module: str) -> subprocess.CompletedProcess[str]:
    """`bundler --help` with one more package installed: `module` and its entry point `value`."""
    (tmp_path / "extra.py").write_text(module)
    info = tmp_path / "extra-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[bundler.kinds]\nextra = {value}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PLUGINS)])}
    return subprocess.run([sys.executable, "-c", "import bundler.kinds as k; print([x.key for x in k.KINDS])"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_an_installed_kind_comes_after_the_built_in_ones(tmp_path: Path) -> None:
    r = installed(tmp_path, "extra:KIND", "from dataclasses import replace\nfrom notes_kind import KIND as NOTES\n"
                                          "KIND = replace(NOTES, key='other')\n")
    assert r.returncode == 0, r.stderr
    # by entry-point name: extra (the kind 'other') before notes
    assert r.stdout.strip() == "['images', 'charts', 'repos', 'updates', 'artifacts', 'other', 'notes']"


@pytest.mark.parametrize(("module", "message"), [
    ("from dataclasses import replace\nfrom notes_kind import KIND as NOTES\nKIND = replace(NOTES, key='images')\n",
     "registers the kind 'images' a second time"),
    ("KIND = object()\n", "is not a Kind"),
])
def test_a_kind_that_takes_a_key_or_is_no_kind_is_refused_naming_its_entry_point(
        tmp_path: Path, module: str, message: str) -> None:
    r = installed(tmp_path, "extra:KIND", module)
    assert r.returncode != 0 and "extra = extra:KIND" in r.stderr and message in r.stderr


@pytest.mark.parametrize(("module", "message"), [
    ("from dataclasses import replace\nfrom notes_kind import KIND as NOTES\n"
     "KIND = replace(NOTES, key='other', roles={**NOTES.roles, 'report': 'notes_kind.stage:NoteStage'})\n",
     "the other kind's report role notes_kind.stage:NoteStage is not a Report"),
    ("from dataclasses import replace\nfrom notes_kind import KIND as NOTES\n"
     "KIND = replace(NOTES, key='other', roles={'reports': 'notes_kind.report:NoteReport'})\n",
     "the other kind names roles bundler does not have: reports"),
])
def test_a_role_that_is_not_its_role_is_refused_naming_the_kind_and_the_role(
        tmp_path: Path, module: str, message: str) -> None:
    """A role class must be a subclass of the role it is named for (an inspect does not run a stage's
    code as its report), and a misspelt role is an error, not a role silently neutral."""
    (tmp_path / "extra.py").write_text(module)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PLUGINS)])}
    r = subprocess.run([sys.executable, "-c", "import bundler.kinds, extra; print(extra.KIND.report.lines(()))"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_roles_load_when_first_asked_for_and_only_the_roles_asked() -> None:
    """A kind's record loads no role until one is asked for; asking for its format loads that module
    only (the build side, stage and service stay unloaded), and asking again gives the same role."""
    code = """if True:
        import json, sys
        from bundler.kinds import KINDS
        def roles(): return sorted(m for m in sys.modules if m.startswith("bundler.kinds.repos."))
        before = roles()
        repos, charts = (next(k for k in KINDS if k.key == key) for key in ("repos", "charts"))
        first = repos.format
        print(json.dumps({"before": before, "after": roles(), "same": first is repos.format,
                          "prune": type(repos.prune).__name__, "neutral": type(charts.prune).__name__}))"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert "bundler.kinds.repos.format" not in seen["before"]
    assert set(seen["after"]) - set(seen["before"]) >= {"bundler.kinds.repos.format"}
    assert not {"bundler.kinds.repos.build", "bundler.kinds.repos.stage", "bundler.kinds.repos.serve"} & set(
        seen["after"])
    assert (seen["same"], seen["prune"], seen["neutral"]) == (True, "RepoPrune", "Prune")


def test_a_kind_named_like_a_field_of_the_reports_is_refused(tmp_path: Path) -> None:
    """Reports key each kind's rows by its key beside their own fields: a kind named `bytes` would
    overwrite `diff`'s total, one named `blobs` an import's registry count. Refused when it is made."""
    for key, field in (("bytes", "bytes"), ("blobs", "blobs")):
        (tmp_path / key).mkdir()
        module = ("from dataclasses import replace\nfrom notes_kind import KIND as NOTES\n"
                  f"KIND = replace(NOTES, key={key!r})\n")
        r = installed(tmp_path / key, "extra:KIND", module)
        assert r.returncode != 0 and f"the kind {key!r} takes the name {field!r}, a field of bundler's reports" \
            in r.stderr, r.stderr
