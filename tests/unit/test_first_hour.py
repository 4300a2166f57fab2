"""What a newcomer meets first: the help says each default once, `fleet plan` without a fleet says so,
and shell completion is a command away. Through the real command line, in process (click's runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.cli import cli
from tests.attack_cases import GOOD


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [["site", "export"], ["import"], ["build"]])
def test_the_help_says_each_default_once(command: list[str]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0 and "(default 8)" not in out and "[default:" in out


def test_fleet_plan_without_a_fleet_says_so(tmp_path: Path) -> None:
    code, _, err = run("fleet", "plan", GOOD, "--fleet", tmp_path / "nowhere")
    assert code == 2 and "there is no fleet at" in err and "fleet add RECEIPT" in err
    (tmp_path / "empty").mkdir()
    code, out, err = run("fleet", "plan", GOOD, "--fleet", tmp_path / "empty")
    assert code == 0 and out == "" and "holds no site yet: nothing to plan for" in err


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nosort -F"), ("zsh", "#compdef bundler"),
                                                ("fish", "complete --no-files --command bundler")])
def test_completion_prints_the_shells_script(shell: str, marker: str) -> None:
    code, out, _ = run("completion", shell)
    assert code == 0 and marker in out and "_BUNDLER_COMPLETE" in out

