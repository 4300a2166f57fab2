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



def test_the_progress_bar_waits_for_a_rate_before_it_estimates_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, the first kilobytes (signatures, manifests) show no frame: a first frame after
    them once estimated "2:07:30 left" for a bundle read in seconds. Once read for a moment, the time
    left is the average so far: here well under a minute."""
    import io
    import re
    import sys
    import time

    from bundler.progress import RATE_AFTER, byte_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    total = 100 << 20
    with byte_progress("verifying", total) as progress:
        progress.advance(4096)  # bundle.json and the signatures
        time.sleep(0.05)
        progress.advance(4096)
        assert screen.getvalue() == ""  # nothing to estimate from yet: no frame
        time.sleep(RATE_AFTER + 0.1)
        progress.advance(total // 2)  # then the payloads, at the medium's speed
        time.sleep(0.15)
        progress.advance(1 << 20)
    frames = [frame for frame in re.split(r"[\r\n]", screen.getvalue()) if "verifying" in frame]
    assert frames, screen.getvalue()
    left = [re.search(r"<(?:(\d+):)?(\d+):(\d+)", frame) for frame in frames]
    seconds = [int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) for m in left if m]
    assert seconds and max(seconds) < 60, frames


@pytest.mark.parametrize(("text", "said"), [
    ("harbor.example/edge/store", "is not a hub: give oci://HOST/PATH[:TAG]"),
    ("oci://127.0.0.1:5000", "names no repository on the hub"),
    ("oci://harbor.example/Edge/Store", "is not a hub"),
    ("oci://harbor.example/edge/store@sha256:" + "a" * 64, "not by digest"),
])
def test_a_hub_that_is_not_one_is_a_usage_error(text: str, said: str) -> None:
    from bundler.errors import UsageError
    from bundler.pipeline.hub import Hub

    with pytest.raises(UsageError, match=said.replace("[", r"\[").replace("]", r"\]")):
        Hub.parse(text)


def test_a_hub_names_its_host_repository_and_tag() -> None:
    from bundler.pipeline.hub import Hub

    assert Hub.parse("oci://127.0.0.1:5000/edge/store") == Hub("127.0.0.1:5000", "edge/store", None)
    assert Hub.parse("oci://harbor.example/edge/store:1.5.0") == Hub("harbor.example", "edge/store", "1.5.0")
    assert Hub.parse("oci://harbor.example/edge/store").receipts("store-7") == "edge/store/receipts/store-7"
