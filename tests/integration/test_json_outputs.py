"""Every `--json` output, recorded: a demo-like release (every built-in kind) built, inspected,
verified, diffed, imported into a default site, pruned, listed, and added to a fleet; each command's
JSON compared with tests/golden/json-outputs.json. What differs from run to run (ports, the test's
directory, times, digests and key ids, signatures, durations) is replaced by stable names in the
order it first appears, so equal values stay equal and a changed field, key, order or structure
fails. A contract changed on purpose is recorded again with `BUNDLER_RECORD_JSON=1` and reviewed in
the diff of the golden file."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import RegistryProcess, start_registry
from devtools import charts
from devtools.packages import build_deb
from devtools.samples import push_samples
from tests.conftest import Keys, Run, SiteFactory

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "json-outputs.json"
SOURCE_PORT = 15100
PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "demo.yaml"

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")
HEX = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
SHORT = re.compile(r"sha256:[0-9a-f]{12}(?![0-9a-f])")  # digests shortened for people
PORT = re.compile(r"127\.0\.0\.1([:_])(\d{4,5})\b")
B64 = re.compile(r"^[A-Za-z0-9+/]{40,}={0,2}$")  # signatures, tokens, passwords
VARYING = {"seconds", "elapsed", "rate", "bytes_per_second", "duration",  # how long it took
           "free", "used", "total", "used_percent"}  # and the machine's disk: never the same


class Names:
    """Stable names for what differs between runs, numbered in the order they first appear."""

    def __init__(self, *work: Path) -> None:
        self.work = [str(w) for w in work]
        self.seen: dict[str, str] = {}

    def name(self, kind: str, value: str) -> str:
        number = sum(k.startswith(kind + ":") for k in self.seen) + 1
        return self.seen.setdefault(f"{kind}:{value}", f"<{kind}-{number}>")

    def text(self, value: str) -> str:
        for work in self.work:
            value = value.replace(work, "<work>")
        value = TIME.sub("<time>", value)
        value = PORT.sub(lambda m: f"127.0.0.1{m[1]}{self.name('port', m[2])}", value)
        value = HEX.sub(lambda m: self.name("hex", m[0]), value)
        value = SHORT.sub(lambda m: self.name("short", m[0]), value)
        return self.name("secret", value) if B64.match(value) else value

    def __call__(self, doc: Any, key: str = "") -> Any:
        if isinstance(doc, dict):
            return {self.text(k): self(v, k) for k, v in doc.items()}
        if isinstance(doc, list):  # a phase that moved no bytes is listed when it took a millisecond or more
            return [self(v, key) for v in doc if not (isinstance(v, dict) and "phase" in v and v.get("bytes") == 0)]
        if isinstance(doc, str):
            return self.text(doc)
        if isinstance(doc, float) or (key in VARYING and isinstance(doc, int)):
            return "<number>"
        return doc


def gitops(path: Path) -> None:
    path.mkdir()
    (path / "hello.yaml").write_text("kind: Deployment\nimage: demo/hello:1.0\n")
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    author = ["-c", "user.email=release@example.com", "-c", "user.name=Release Engineering"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], [*author, "commit", "-qm", "hello"],
                 [*author, "tag", "-a", "v1.0.0", "-m", "first release"]):
        subprocess.run(["git", *args], cwd=path, check=True, env=env)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[RegistryProcess]:
    """The source registry on a port of its own below the ephemeral range (no other test's free port):
    chart archives name it, so the same port makes the same bytes."""
    process = start_registry(tmp_path / "source", port=SOURCE_PORT)
    yield process
    process.stop()


def test_every_json_output_keeps_its_recorded_shape(source: RegistryProcess, keys: Keys, cli: Callable[..., Run],
                                                    make_site: SiteFactory, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # dpkg-deb: the same package is the same bytes
    # the sources' absolute paths travel in bundle.json: a directory name of one length keeps sizes still
    work = Path(tempfile.mkdtemp(prefix="bundler-json-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    host = source.address
    push_samples(RegistryClient(host))
    chart_repo = work / "chart-repo"
    chart_repo.mkdir()
    values = {"image": {"registry": host, "repository": "demo/hello", "tag": "1.0"}}
    charts.write_index(chart_repo, [charts.package(chart_repo, "hello-chart", v, values=values)
                                    for v in ("0.1.0", "0.2.0")])
    gitops(work / "gitops")
    build_deb(work, "edge-agent")
    (work / "model.onnx").write_bytes(b"model one" * 1000)
    outputs: dict[str, Any] = {}
    names = Names(work, tmp_path)

    def record(title: str, *args: str | Path) -> Any:
        r = cli(*args)
        assert r.code == 0, (title, r.err)
        outputs[title] = names(json.loads(r.out))
        return json.loads(r.out)

    with charts.serve(chart_repo) as chart_url:
        profile = (PROFILE.read_text().replace("127.0.0.1:15000", host)
                   .replace("http://127.0.0.1:15002", chart_url).replace("../.demo/gitops", "gitops")
                   .replace("../.demo/edge-agent_1.0.0_all.deb", "edge-agent_1.0.0_all.deb")
                   .replace("../.demo/models/order-accuracy.onnx", "model.onnx"))
        (work / "demo.yaml").write_text(profile)
        (work / "demo-2.yaml").write_text(profile.replace("version: 1.0.0", "version: 1.1.0")
                                          .replace("tag: \"1.3\"", "tag: \"1.4\""))
        for version, file in (("1.0.0", "demo.yaml"), ("1.1.0", "demo-2.yaml")):
            if version == "1.1.0":
                (work / "model.onnx").write_bytes(b"model two" * 1000)
            built = cli("build", work / file, "-o", work / f"demo-{version}.bundle.tar", "--key", keys.release.key)
            assert built.code == 0, built.err
    v1, v2 = work / "demo-1.0.0.bundle.tar", work / "demo-1.1.0.bundle.tar"

    record("inspect", "inspect", v1, "--json")
    record("inspect --key", "inspect", v1, "--json", "--key", keys.release.pub)
    record("verify", "verify", v1, "--key", keys.release.pub, "--json")
    record("diff", "diff", v1, v2, "--json")

    site = make_site(work / "site", "--name", "store-1", "--group", "line-1", up=True)
    request.addfinalizer(lambda: cli("site", "down", site))  # before the directory goes (finalizers: last first)
    record("import --dry-run", "import", v1, "--site", site, "--dry-run", "--json")
    record("import", "import", v1, "--site", site, "--json")
    assert cli("site", "receipt", site, "-o", work / "store-1-at-1.0.0.receipt.json").code == 0
    record("import again", "import", v1, "--site", site, "--json")
    record("import 1.1.0", "import", v2, "--site", site, "--json")
    record("verify --site", "verify", v2, "--site", site, "--json")
    record("site status", "site", "status", site, "--json")
    record("site prune --dry-run", "site", "prune", site, "--keep", "1", "--dry-run", "--json")
    record("updates list", "updates", "list", "--site", site, "--json")

    assert cli("site", "receipt", site, "-o", work / "store-1.receipt.json").code == 0
    fleet = ["--fleet", str(work / "fleet")]
    assert cli("fleet", "enroll", site / "site.pub", *fleet).code == 0
    assert cli("fleet", "add", work / "store-1.receipt.json", *fleet).code == 0
    record("fleet plan", "fleet", "plan", v2, "--json", *fleet)
    behind = ["--fleet", str(work / "fleet-behind")]  # the same site, as its receipt said at 1.0.0
    assert cli("fleet", "enroll", site / "site.pub", *behind).code == 0
    assert cli("fleet", "add", work / "store-1-at-1.0.0.receipt.json", *behind).code == 0
    record("fleet plan (a delta)", "fleet", "plan", v2, "--json", *behind)
    record("fleet status", "fleet", "status", "--json", *fleet)

    text = json.dumps(outputs, indent=1, sort_keys=False) + "\n"
    if os.environ.get("BUNDLER_RECORD_JSON"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    recorded = json.loads(GOLDEN.read_text())
    for title, doc in outputs.items():
        now, then = (json.dumps(d, indent=1).splitlines() for d in (doc, recorded.get(title)))
        assert now == then, f"`{title} --json` differs from {GOLDEN.name}:\n" + "\n".join(
            difflib.unified_diff(then, now, "recorded", "now", lineterm="", n=2))
    assert list(outputs) == list(recorded)
