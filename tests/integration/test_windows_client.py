"""A Windows client against a real default site (nginx front, the application, the update cache):
`site client windows` enrolls it and writes its script and configuration; a test client follows
exactly the script's steps (windows.STEPS, the one table): it asks for its plan, downloads with
resume, checks SHA-256, builds the install command from the table, and reports. An interrupted
download resumes; a payload whose bytes changed on the site is refused and reported failed; an exit
code 3010 is recorded as reboot-pending, the site then holds the host until it restarts, and the
status page, `updates status` and `site status` show it. No Windows host runs here: the PowerShell is
parsed (tests/unit/test_windows.py), its protocol exercised here."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bundler.kinds.updates.windows import STEP_OF
from tests.attack_cases import forge_json_member
from tests.conftest import Keys, Run, SiteFactory
from tests.helpers import credentials

ATTACK = "x'; Remove-Item C:\\ -Recurse; '"


class WindowsClient:
    """What bundler-updates.ps1 does, step by step, with the exit codes a test gives."""

    def __init__(self, config: dict[str, Any], work: Path) -> None:
        self.config, self.work = config, work
        pem = config["ca_pem"]
        der = base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))
        assert hashlib.sha256(der).hexdigest() == config["ca_sha256"]  # the pin the script checks
        self.ca = work / "ca.pem"
        self.ca.write_text(pem)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {config['token']}"
        self.ran: list[list[str]] = []

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.config["site"] + path, verify=str(self.ca), timeout=30, **kw)

    def plan(self, build: str = "10.0.26100.2033", aksee: str | None = None) -> dict[str, Any]:
        mode = f"aksee&aksee={aksee}" if aksee else "windows"
        r = self.get(f"/updates/api/plan?mode={mode}&build={build}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def report(self, results: list[dict[str, Any]], reboot_pending: bool = False) -> None:
        doc = {"client": self.config["client"], "group": self.config["group"], "results": results,
               "host": {"os_build": "10.0.26100", "reboot_pending": reboot_pending}}
        r = self.http.post(self.config["site"] + "/updates/api/report", json=doc, verify=str(self.ca), timeout=30)
        assert r.status_code == 200, r.text

    def download(self, item: dict[str, Any], stop_after: int | None = None) -> Path | None:
        """Into <sha256><extension>, resuming a partial file; None when the SHA-256 does not match."""
        target = self.work / (item["sha256"] + STEP_OF[item["step"]].extension)
        partial = target.with_name(target.name + ".partial")
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        r = self.get(item["url"], headers=headers, stream=True)
        assert r.status_code == (206 if have else 200), r.status_code
        with open(partial, "ab" if have else "wb") as out:
            for chunk in r.iter_content(4096):
                out.write(chunk)
                if stop_after is not None and out.tell() >= stop_after:
                    return None  # the connection dropped here
        if hashlib.sha256(partial.read_bytes()).hexdigest() != item["sha256"]:
            partial.unlink()
            return None
        partial.rename(target)
        return target

    def fetch(self, item: dict[str, Any]) -> Path | None:
        """Test-Payload, then Get-Payload: a file found under the payload's name that does not hash to
        it is deleted and fetched again."""
        target = self.work / (item["sha256"] + STEP_OF[item["step"]].extension)
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() != item["sha256"]:
            target.unlink()
        return target if target.exists() else self.download(item)

    def run(self, item: dict[str, Any], file: Path) -> None:
        """Invoke-Step: hashed right before it runs; other bytes are deleted, never run."""
        if hashlib.sha256(file.read_bytes()).hexdigest() != item["sha256"]:
            file.unlink()
            raise AssertionError(f"{file} is not {item['sha256']}: not run")
        step = STEP_OF[item["step"]]  # the table: never a command from the plan
        self.ran.append([step.program.replace("{file}", str(file)), *(a.replace("{file}", str(file))
                                                                      for a in step.arguments)])

    def aksee(self, node: dict[str, str], update_works: bool) -> str:
        """The script's -AksEdge run on a node at node["version"]: the one fragment from there is
        staged, the update runs (and may throw), and the fragment is reported installed only once
        the node reports its `to`. Returns what it reported."""
        (item,) = self.plan(aksee=node["version"])["steps"]
        file = self.fetch(item)
        assert file is not None
        self.run(item, file)
        if update_works:
            node["version"] = item["aksee_to"]
        status = "installed" if node["version"] == item["aksee_to"] else "failed"
        self.report([{"sha256": item["sha256"], "status": status, "exit_code": 0}])
        return status

    def install(self, item: dict[str, Any], file: Path, exit_code: int) -> dict[str, Any]:
        step = STEP_OF[item["step"]]  # the table: never a command from the plan
        self.ran.append([step.program.replace("{file}", str(file)), *(a.replace("{file}", str(file))
                                                                      for a in step.arguments)])
        status = "installed" if exit_code == 0 else "reboot-pending" if exit_code in (3010, 1641) else "failed"
        result = {"sha256": item["sha256"], "status": status, "exit_code": exit_code}
        self.report([result], reboot_pending=status == "reboot-pending")
        return result


def test_a_windows_client_follows_its_plan_against_a_real_site(
        cli: Callable[..., Run], keys: Keys, make_site: SiteFactory, tmp_path: Path) -> None:
    for name, size in (("cu-1.msu", 300_000), ("cu-2.msu", 200_000), ("agent.msi", 50_000)):
        (tmp_path / name).write_bytes(os.urandom(size))
    (tmp_path / "win.yaml").write_text(f"""apiVersion: bundler/v1
kind: Profile
metadata: {{name: win, version: 1.0.0}}
spec:
  updates:
    - path: cu-1.msu
      name: cu-checkpoint
      metadata: {{version: "{ATTACK.replace(chr(92), chr(92) * 2)}"}}
      approve: [line-1]
      windows: {{kb: KB5043080, osBuild: {{min: "10.0.26100"}}, reboot: true}}
    - path: cu-2.msu
      name: cu-latest
      approve: [line-1]
      windows: {{kb: KB5044284, requires: [cu-checkpoint], reboot: true}}
    - path: agent.msi
      name: agent
      approve: [line-1]
      windows: {{kb: KB0000001}}
""")
    attacked = (tmp_path / "win.yaml").read_text().replace("name: agent", f"name: \"{ATTACK}\"")
    (tmp_path / "attacked.yaml").write_text(attacked)
    refused = cli("build", tmp_path / "attacked.yaml", "-o", tmp_path / "x.tar", "--key", keys.release.key)
    assert refused.code == 2 and "is not an update name" in refused.err and not (tmp_path / "x.tar").exists()

    built = cli("build", tmp_path / "win.yaml", "-o", tmp_path / "win.bundle.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    site = make_site("site", "--group", "line-1", "--group", "line-2", up=True)
    forged = forge_json_member(tmp_path / "win.bundle.tar", tmp_path / "forged.bundle.tar", "bundle.json",
                               lambda doc: doc["updates"][2].update(kind="powershell"))
    refused = cli("import", forged, "--site", site)
    assert refused.code == 3 and "updates[2].kind" in refused.err  # a kind outside the table: nothing changes
    assert not json.loads(cli("updates", "list", "--site", site, "--json").out)["updates"]
    assert cli("import", tmp_path / "win.bundle.tar", "--site", site).code == 0

    out = tmp_path / "pos-7"
    made = cli("site", "client", "windows", site, "pos-7", "--group", "line-1", "-o", out)
    assert made.code == 0, made.err
    assert stat.S_IMODE((out / "bundler-client.json").stat().st_mode) == 0o600  # it holds the token
    assert ATTACK not in (out / "bundler-updates.ps1").read_text()
    client = WindowsClient(json.loads((out / "bundler-client.json").read_text()), tmp_path)

    plan = client.plan()
    assert [s["name"] for s in plan["steps"]] == ["agent", "cu-checkpoint", "cu-latest"]
    assert plan["steps"][1]["version"] == ATTACK  # data, a JSON string: never in a command
    assert {s["step"] for s in plan["steps"]} <= set(STEP_OF)
    assert client.plan(build="10.0.22631")["held"][0]["name"] == "cu-checkpoint"  # Windows 11 23H2: not for it
    anonymous = requests.get(client.config["site"] + "/updates/api/plan", verify=str(client.ca), timeout=10)
    assert anonymous.status_code == 401
    other = cli("site", "client", "windows", site, "till-2", "--group", "line-2", "-o", tmp_path / "till-2")
    assert other.code == 0, other.err
    line_2 = WindowsClient(json.loads((tmp_path / "till-2" / "bundler-client.json").read_text()), tmp_path)
    assert line_2.plan()["steps"] == []  # approved for line-1 only: another group's client gets none

    agent, checkpoint = plan["steps"][0], plan["steps"][1]
    assert client.download(agent, stop_after=20_000) is None  # the connection dropped midway
    file = client.download(agent)  # resumed with a Range request
    assert file is not None and hashlib.sha256(file.read_bytes()).hexdigest() == agent["sha256"]
    client.install(agent, file, 0)
    assert client.ran[-1] == ["msiexec.exe", "/i", str(file), "/qn", "/norestart"]
    assert [s["name"] for s in client.plan()["steps"]] == ["cu-checkpoint", "cu-latest"]  # installed: not again

    blob = site / "updates" / "blobs" / checkpoint["sha256"]
    good = blob.read_bytes()
    blob.write_bytes(bytes(len(good)))  # the site's copy changed under it
    assert client.download(checkpoint) is None
    client.report([{"sha256": checkpoint["sha256"], "status": "failed", "exit_code": None}])
    blob.write_bytes(good)
    status = json.loads(cli("updates", "status", "--site", site, "--json").out)["clients"]
    assert status[0]["client"] == "pos-7" and status[0]["failed"] == [{"sha256": checkpoint["sha256"],
                                                                       "exit_code": None}]

    file = client.download(checkpoint)
    assert file is not None
    client.install(checkpoint, file, 3010)
    assert client.ran[-1] == ["wusa.exe", str(file), "/quiet", "/norestart"]
    held = client.plan()
    assert held["reboot_pending"] and held["steps"] == []  # nothing until the host restarted
    status = json.loads(cli("updates", "status", "--site", site, "--json").out)["clients"][0]
    assert status["reboot_pending"] and [u["name"] for u in status["lacking"]] == ["cu-latest"]
    page = requests.get(client.config["site"] + "/", auth=credentials(site), verify=str(client.ca), timeout=10).text
    assert "pos-7" in page and "reboot_pending" in page

    client.report([], reboot_pending=False)  # restarted
    assert [s["name"] for s in client.plan()["steps"]] == ["cu-latest"]

    trust = cli("site", "client", "aksee-trust", site, "-o", tmp_path / "aksee")
    assert trust.code == 0, trust.err
    script = tmp_path / "aksee" / "bundler-aksee-trust.ps1"
    assert stat.S_IMODE(script.stat().st_mode) == 0o600  # it holds the site's pull credentials
    text = script.read_text()
    ca = base64.b64encode((site / "pki" / "ca.pem").read_bytes()).decode()
    assert "Invoke-AksEdgeNodeCommand" in text and ca in text


def test_a_clients_reports_are_kept_bounded_however_many_it_sends(
        cli: Callable[..., Run], keys: Keys, make_site: SiteFactory, tmp_path: Path) -> None:
    """200 reports of 1,000 results each from one client (a payload of the site's among digests the
    site never had): what the site keeps of them stays the size of one, so a report, a plan and
    `updates status` read no more after the 200th than after the first."""
    import time

    (tmp_path / "agent.msi").write_bytes(os.urandom(10_000))
    (tmp_path / "win.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: win, version: 1.0.0}\n"
                                       "spec:\n  updates:\n    - path: agent.msi\n      name: agent\n"
                                       "      approve: [line-1]\n      windows: {kb: KB0000001}\n")
    assert cli("build", tmp_path / "win.yaml", "-o", tmp_path / "w.tar", "--key", keys.release.key).code == 0
    site = make_site("site", "--group", "line-1", up=True)
    assert cli("import", tmp_path / "w.tar", "--site", site).code == 0
    assert cli("site", "client", "windows", site, "pos-9", "--group", "line-1", "-o", tmp_path / "pos-9").code == 0
    client = WindowsClient(json.loads((tmp_path / "pos-9" / "bundler-client.json").read_text()), tmp_path)
    (agent,) = client.plan()["steps"]
    record = site / "updates" / "reports" / "pos-9.json"
    sizes, took = [], []
    for n in range(200):
        results = [{"sha256": hashlib.sha256(f"{n}-{i}".encode()).hexdigest(), "status": "failed", "exit_code": 1}
                   for i in range(999)] + [{"sha256": agent["sha256"], "status": "failed", "exit_code": n}]
        started = time.monotonic()
        client.report(results)
        took.append(time.monotonic() - started)
        sizes.append(record.stat().st_size)
    kept = json.loads(record.read_text())["results"]
    assert list(kept) == [agent["sha256"]] and kept[agent["sha256"]]["exit_code"] == 199  # the newest result
    assert max(sizes) <= sizes[0] + 8 < 4096, (sizes[0], max(sizes))  # the exit code grew two digits
    plan, status = [], []
    for _ in range(3):
        started = time.monotonic()
        client.plan()
        plan.append(time.monotonic() - started)
        started = time.monotonic()
        assert cli("updates", "status", "--site", site).code == 0
        status.append(time.monotonic() - started)
    print(f"report 1: {took[0] * 1000:.0f} ms, report 200: {took[-1] * 1000:.0f} ms (median of all "
          f"{sorted(took)[100] * 1000:.0f} ms); plan {min(plan) * 1000:.0f} ms, updates status {min(status):.2f} s; "
          f"the record {sizes[0]} bytes after the first report, {sizes[-1]} after the 200th")



def test_the_aksee_chain_follows_the_node_and_a_planted_payload_is_fetched_again(
        cli: Callable[..., Run], keys: Keys, make_site: SiteFactory, tmp_path: Path) -> None:
    """T4-3: node at 1.9, fragment a (1.9 -> 1.10) reported installed, the node still at 1.9 (its
    update threw): the next plan offers a again for its update, never b (1.10 -> 1.11); once the node
    reports 1.10, b. A file with a's name and other bytes in the downloads folder is deleted and
    fetched again, never run."""
    for name in ("AksWindows-a.exe", "AksWindows-b.exe"):
        (tmp_path / name).write_bytes(os.urandom(40_000))
    (tmp_path / "aksee.yaml").write_text("""apiVersion: bundler/v1
kind: Profile
metadata: {name: aksee, version: 1.0.0}
spec:
  updates:
    - path: AksWindows-a.exe
      name: aksee-a
      approve: [line-1]
      windows: {aksee: {from: "1.9.262.0", to: "1.10.110.0"}}
    - path: AksWindows-b.exe
      name: aksee-b
      approve: [line-1]
      windows: {aksee: {from: "1.10.110.0", to: "1.11.247.0"}}
""")
    built = cli("build", tmp_path / "aksee.yaml", "-o", tmp_path / "a.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    site = make_site("site", "--group", "line-1", up=True)
    assert cli("import", tmp_path / "a.tar", "--site", site).code == 0
    assert cli("site", "client", "windows", site, "edge-host", "--group", "line-1", "-o", tmp_path / "c").code == 0
    client = WindowsClient(json.loads((tmp_path / "c" / "bundler-client.json").read_text()), tmp_path)
    node = {"version": "1.9.262.0"}

    (a,) = client.plan(aksee=node["version"])["steps"]
    assert a["name"] == "aksee-a"
    planted = tmp_path / f"{a['sha256']}.exe"
    planted.write_bytes(b"MZ not what the site sent")
    file = client.fetch(a)
    assert file == planted and hashlib.sha256(planted.read_bytes()).hexdigest() == a["sha256"]  # fetched again

    client.report([{"sha256": a["sha256"], "status": "installed", "exit_code": 0}])  # as the older script did
    held = client.plan(aksee=node["version"])
    assert [(s["name"], s.get("pending_update")) for s in held["steps"]] == [("aksee-a", True)]
    assert [h["name"] for h in held["held"]] == ["aksee-b"] and "pending" in held["held"][0]["why"]
    assert client.aksee(node, update_works=False) == "failed" and node["version"] == "1.9.262.0"
    assert [s["name"] for s in client.plan(aksee=node["version"])["steps"]] == ["aksee-a"]  # never b
    assert client.aksee(node, update_works=True) == "installed" and node["version"] == "1.10.110.0"
    assert [s["name"] for s in client.plan(aksee=node["version"])["steps"]] == ["aksee-b"]
    assert client.ran == [[str(planted), "-y"]] * 2  # only the bytes the site named ran
