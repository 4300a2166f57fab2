"""`make demo` and `make test` install their Debian packages themselves (devtools/deps.sh, shared with
.ci/run): checked against dpkg's view, with fake dpkg-query, id and apt-get on PATH."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEPS = ROOT / "devtools" / "deps.sh"


def fake_bin(tmp_path: Path, uid: int, installed: set[str]) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    scripts = {
        "dpkg-query": "pkg=\"${@: -1}\"\ncase \" " + " ".join(sorted(installed)) + " \" in\n"
                      "  *\" $pkg \"*) printf 'install ok installed' ;;\n  *) exit 1 ;;\nesac\n",
        "id": f"echo {uid}\n",
        "apt-get": f"echo \"$@\" >> {log}\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log


def packages() -> list[str]:
    match = re.search(r"^PACKAGES=\((.*)\)$", DEPS.read_text(), re.M)
    assert match is not None
    return match[1].split()


def run(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEPS)], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_as_root_it_installs_exactly_the_missing_packages(tmp_path: Path) -> None:
    wanted = packages()
    bin_dir, log = fake_bin(tmp_path, 0, set(wanted[::2]))
    r = run(bin_dir)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("update")
    assert calls[1].split()[-len(wanted[1::2]):] == wanted[1::2] and "install" in calls[1]


def test_not_root_it_prints_the_command_and_exits_2(tmp_path: Path) -> None:
    bin_dir, log = fake_bin(tmp_path, 1000, {"git"})
    r = run(bin_dir)
    missing = [p for p in packages() if p != "git"]
    assert r.returncode == 2 and not log.exists()
    assert f"hint: run as root: apt-get install -y {' '.join(missing)}" in r.stderr and "Traceback" not in r.stderr


def test_nothing_missing_installs_nothing(tmp_path: Path) -> None:
    bin_dir, log = fake_bin(tmp_path, 0, set(packages()))
    assert run(bin_dir).returncode == 0 and not log.exists()


def test_the_two_commands_use_the_install_step_and_ci_shares_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        deps_target = re.search(r"^deps:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe is not None and deps_target is not None
        assert "devtools/deps.sh" in recipe[1] or ("deps" in recipe[0] and "devtools/deps.sh" in deps_target[1])
    assert "devtools/deps.sh" in (ROOT / ".ci" / "run").read_text()
    quick = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
