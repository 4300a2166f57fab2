"""Windows hosts and AKS Edge Essentials: what a profile may say of a Windows payload (checked at build,
with file:line), what bundle.json may say (parsed totally), a client's plan (order by requirements
and KB, the AKS EE chain, approvals, what the client reported, a pending restart), and the generated
PowerShell: it parses with a PowerShell grammar with no error node, runs only the commands of the
install table and a fixed list of cmdlets, and holds nothing from a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tree_sitter as ts
import tree_sitter_powershell as tsp

from bundler.kinds import KINDS
from bundler.kinds.updates.catalog import CatalogEntry
from bundler.kinds.updates.entry import UpdateEntry
from bundler.kinds.updates.plan import plan_for
from bundler.kinds.updates.windows import AKSEE_COMMANDS, STEPS, WindowsInfo
from bundler.kinds.updates.windows_client import script_text, steps_table
from bundler.profile import ProfileError, parse_profile
from bundler.untrusted import Malformed, Obj

PARSER = ts.Parser(ts.Language(tsp.language()))
# what the scripts may run besides the install table's programs and AKS EE's update commands
CMDLETS = {"Set-StrictMode", "Get-Content", "ConvertFrom-Json", "ConvertTo-Json", "Add-Type", "New-Object", "Join-Path",
           "Test-Path", "New-Item", "Get-Item", "Get-FileHash", "Move-Item", "Remove-Item", "Start-Process",
           "Write-Host", "Write-Warning", "Out-Null", "ForEach-Object", "Get-Module", "Sort-Object", "Select-Object",
           "Split-Path", "Invoke-AksEdgeNodeCommand", "kubectl", "Set-Acl"}


def commands(script: str) -> set[str]:
    """Every command a PowerShell script names (tree-sitter-powershell); fails on any error node."""
    tree = PARSER.parse(script.encode())
    found: set[str] = set()
    errors: list[str] = []

    def walk(node: ts.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"{node.start_point}: {node.text[:60]!r}")
        if node.type == "command_name":
            found.add(node.text.decode())  # type: ignore[union-attr]
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not tree.root_node.has_error and not errors, errors
    return found


def functions(script: str) -> set[str]:
    tree = PARSER.parse(script.encode())
    names: set[str] = set()

    def walk(node: ts.Node) -> None:
        if node.type == "function_statement":
            names.update(c.text.decode() for c in node.children if c.type == "function_name")  # type: ignore[union-attr]
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return names


def test_the_windows_script_parses_and_runs_only_the_table_and_fixed_cmdlets() -> None:
    script = script_text()
    named = commands(script)
    own = functions(script)
    assert own >= {"Get-Payload", "Invoke-Step", "Send-Report"}
    assert named - own <= CMDLETS | set(AKSEE_COMMANDS), named - own - CMDLETS
    assert steps_table() in script  # the install steps come from windows.STEPS, the one table
    for step in STEPS:  # every program is a fixed name (or the fragment itself), never text from a bundle
        assert step.program in ("wusa.exe", "dism.exe", "msiexec.exe", "{file}")


def command_places(script: str) -> list[tuple[str, int, str | None]]:
    """(command, byte offset, the function it is in) of every command in the script, in order."""
    tree = PARSER.parse(script.encode())
    found: list[tuple[str, int, str | None]] = []

    def walk(node: ts.Node, function: str | None) -> None:
        if node.type == "function_statement":
            function = next(c.text.decode() for c in node.children if c.type == "function_name")  # type: ignore[union-attr]
        if node.type == "command_name":
            found.append((node.text.decode(), node.start_byte, function))  # type: ignore[union-attr]
        for child in node.children:
            walk(child, function)

    walk(tree.root_node, None)
    return found


def test_the_script_hashes_each_payload_right_before_it_runs_it_and_locks_its_folder() -> None:
    """Start-Process (what runs a payload) is in Invoke-Step alone, after its Get-FileHash; every call of
    Invoke-Step follows a Test-Payload of the same file (a found file with other bytes goes); the
    downloads folder gets an ACL of its own (inheritance off) before any payload is fetched."""
    script = script_text()
    places = command_places(script)
    runs = [(offset, fn) for name, offset, fn in places if name == "Start-Process"]
    assert runs and all(fn == "Invoke-Step" for _, fn in runs)
    hashes = [offset for name, offset, fn in places if name == "Get-FileHash" and fn == "Invoke-Step"]
    assert hashes and max(hashes) < min(offset for offset, _ in runs)
    assert "$hash -ne [string]$Item.sha256" in script[max(hashes):min(offset for offset, _ in runs)]
    main = [(name, offset) for name, offset, fn in places if fn is None]
    steps = [offset for name, offset in main if name == "Invoke-Step"]
    checks = [offset for name, offset in main if name == "Test-Payload"]
    assert steps and all(any(c < s for c in checks) for s in steps)
    protect = [name for name, _, fn in places if fn == "Protect-Downloads"]
    assert "Set-Acl" in protect and "SetAccessRuleProtection($true, $false)" in script
    first_fetch = min(offset for name, offset in main if name in ("Get-Payload", "Test-Payload"))
    assert min(offset for name, offset in main if name == "Protect-Downloads") < first_fetch
    assert "'S-1-5-18', 'S-1-5-32-544'" in script  # SYSTEM and the Administrators, by SID


def test_the_script_reports_an_aksee_fragment_installed_only_once_the_node_reports_its_version() -> None:
    script = script_text()
    aksee = script[script.index("if ($AksEdge) {\n        # staged"):]
    update = aksee.index("Start-AksEdgeUpdate")
    check = aksee.index("if ($now -ne [string]$item.aksee_to)")
    installed = aksee.index("status = 'installed'")
    assert update < check < installed and "status = 'failed'" in aksee[check:installed]


def test_the_script_holds_nothing_of_a_site_or_a_bundle() -> None:
    """The same text for every site and client: the plan comes as data at run time."""
    assert script_text() == script_text()
    assert "Remove-Item C:" not in script_text() and "{{" not in script_text()


PROFILE = """apiVersion: bundler/v1
kind: Profile
metadata: {{name: win, version: 1.0.0}}
spec:
  updates:
{items}
"""


def profile(items: str) -> Any:
    return parse_profile(PROFILE.format(items=items), "win.yaml", kinds=KINDS)


def test_a_profile_says_what_a_windows_payload_is_and_it_is_checked() -> None:
    parsed = profile("""    - path: cu-1.msu
      name: cu-checkpoint
      windows: {kb: KB5043080, osBuild: {min: "10.0.26100"}, arch: amd64, reboot: true}
    - path: cu-2.msu
      name: cu-latest
      windows: {kb: KB5044284, requires: [cu-checkpoint], reboot: true}
    - path: AksWindows-x64_abc.exe
      windows: {aksee: {from: "1.8.202.0", to: "1.9.262.0"}}""")
    specs = parsed.items("updates")
    assert [s.kind for s in specs] == ["msu", "msu", "aksee-fragment"]
    assert specs[1].windows == WindowsInfo(kb="KB5044284", requires=("cu-checkpoint",), reboot=True)
    assert specs[2].windows.aksee_from == "1.8.202.0"


@pytest.mark.parametrize(("items", "message"), [
    ("    - path: a.deb\n      windows: {kb: KB5043080}", "windows is for msu, cab, msi, aksee-fragment payloads"),
    ("    - path: a.msu\n      windows: {kb: 5043080}", "must be a non-empty string (quote it)"),
    ("    - path: a.msu\n      windows: {kb: KB12}", "is not a KB number"),
    ("    - path: a.msu\n      windows: {arch: x86}", "is not one of amd64, arm64"),
    ("    - path: a.msu\n      windows: {osBuild: {min: '10.0.26100', max: '10.0.22631'}}", "is above max"),
    ("    - path: a.msu\n      windows: {requires: [nothing-here]}", "'nothing-here' is not an update of this profile"),
    ("    - path: a.msu\n      name: a\n      windows: {requires: [b]}\n    - path: b.msu\n      name: b\n"
     "      windows: {requires: [a]}", "go round in a circle"),
    ("    - path: AksWindows-x64_1.exe", "an AKS EE fragment needs windows.aksee"),
    ("    - path: AksWindows-x64_1.exe\n      windows: {aksee: {from: 1.8, to: '1.9.262.0'}}", "must be a string"),
    ("    - path: a.msu\n      windows: {aksee: {from: '1.8.202.0', to: '1.9.262.0'}}", "aksee is for aksee-fragment"),
    ("    - path: a.msu\n      windows: {reboot: sometimes}", "reboot must be true or false"),
    ("    - path: a.exe\n      kind: exe", "kind 'exe' is not one of"),
])
def test_a_wrong_windows_payload_is_refused_at_build_naming_the_line(items: str, message: str) -> None:
    with pytest.raises(ProfileError) as refused:
        profile(items)
    assert message in str(refused.value) and "win.yaml:" in str(refused.value)


def entry(**changes: Any) -> dict[str, Any]:
    doc = {"name": "cu", "kind": "msu", "file": "cu.msu", "sha256": "a" * 64, "size": 10, "metadata": {},
           "approve": [], "windows": {"kb": "KB5043080", "requires": [], "reboot": True}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("doc", "field"), [
    (entry(kind="powershell"), "kind"),
    (entry(kind="deb"), "windows is for"),
    (entry(windows={"kb": "KB1; Remove-Item", "requires": [], "reboot": False}), "windows.kb"),
    (entry(windows={"requires": ["x'; Remove-Item C:\\ -Recurse; '"], "reboot": False}), "windows.requires"),
    (entry(windows={"requires": [], "reboot": "yes"}), "windows.reboot"),
    (entry(kind="aksee-fragment", file="AksWindows.exe", windows={"requires": [], "reboot": False}), "AKS EE"),
    (entry(windows={"requires": [], "reboot": False, "aksee_from": "1.8.202.0"}), "go together"),
])
def test_a_forged_windows_entry_in_bundle_json_is_malformed_naming_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(Malformed) as refused:
        UpdateEntry.parse(Obj(doc, "updates[0]"))
    assert field in str(refused.value)


def catalog_entry(name: str, sha: str, kind: str = "msu", version: str = "1", **windows: Any) -> CatalogEntry:
    """As the site's catalog.json holds it, read back the way the site reads it."""
    return CatalogEntry.parse(Obj({"name": name, "kind": kind, "file": f"{name}.x", "sha256": sha * 64, "size": 100,
                                   "version": version, "windows": {"requires": [], "reboot": False, **windows}}, name))


CU_A = catalog_entry("cu-checkpoint", "a", kb="KB5043080", reboot=True)
CU_B = catalog_entry("cu-latest", "b", kb="KB5044284", requires=["cu-checkpoint"], reboot=True)
TOOL = catalog_entry("agent", "c", kind="msi", kb="KB0000001")
ARM = catalog_entry("arm-only", "d", arch="arm64")
NEW_OS = catalog_entry("new-os", "e", os_min="10.0.26200")
ORPHAN = catalog_entry("orphan", "f", requires=["not-approved"])
FRAG_1 = catalog_entry("aksee-1.9", "1", kind="aksee-fragment", aksee_from="1.8.202.0", aksee_to="1.9.262.0")
FRAG_2 = catalog_entry("aksee-1.10", "2", kind="aksee-fragment", aksee_from="1.9.262.0", aksee_to="1.10.99.0")
FRAG_X = catalog_entry("aksee-other", "3", kind="aksee-fragment", aksee_from="1.7.0.0", aksee_to="1.8.0.0")
APPROVED = [CU_B, TOOL, CU_A, ARM, NEW_OS, ORPHAN, FRAG_2, FRAG_1, FRAG_X]


def plan(installed: set[str] = frozenset(), mode: str = "windows", aksee: str | None = None,  # type: ignore[assignment]
         reboot: bool = False) -> Any:
    return plan_for(APPROVED, set(installed), mode=mode, build="10.0.26100.2033", arch="amd64", aksee_version=aksee,
                    reboot_pending=reboot)


def test_a_plan_installs_each_payload_after_what_it_requires_for_this_host_only() -> None:
    first = plan()
    assert [s["name"] for s in first.steps] == ["agent", "cu-checkpoint", "cu-latest"]  # KB order, then requires
    assert [s["step"] for s in first.steps] == ["msi", "msu", "msu"]
    held = {h["name"]: h["why"] for h in first.held}
    assert set(held) == {"arm-only", "new-os", "orphan"} and "not-approved" in held["orphan"]
    assert first.steps[1]["url"] == f"/updates/blobs/sha256/{'a' * 64}" and first.steps[1]["reboot"] is True


def test_a_plan_is_idempotent_after_reports_and_waits_for_a_restart() -> None:
    after = plan({"c" * 64, "a" * 64})
    assert [s["name"] for s in after.steps] == ["cu-latest"]  # what was reported is not offered again
    assert plan({"c" * 64, "a" * 64, "b" * 64}).steps == []
    waiting = plan(reboot=True)
    assert waiting.reboot_pending and waiting.steps == []


def test_aksee_fragments_follow_the_nodes_own_version_one_version_at_a_time() -> None:
    chain = plan(mode="aksee", aksee="1.8.202.0")
    assert [s["name"] for s in chain.steps] == ["aksee-1.9"]  # only the fragment from where the node is
    assert [h["name"] for h in chain.held] == ["aksee-1.10", "aksee-other"]
    assert "offered once the node reports 1.9.262.0" in chain.held[0]["why"]
    assert [s["name"] for s in plan(mode="aksee", aksee="1.9.262.0").steps] == ["aksee-1.10"]
    unknown = plan(mode="aksee")
    assert unknown.steps == [] and all("not known" in h["why"] for h in unknown.held)
    # 1.8 -> 1.9 reported applied, the node still at 1.8 (its update threw): the update again, not 1.9 -> 1.10
    staged = plan({"1" * 64}, mode="aksee", aksee="1.8.202.0")
    assert [(s["name"], s.get("pending_update")) for s in staged.steps] == [("aksee-1.9", True)]
    assert "the update of aksee-1.9, staged, is pending" in staged.held[0]["why"]
    assert [s["name"] for s in plan({"1" * 64}, mode="aksee", aksee="1.9.262.0").steps] == ["aksee-1.10"]


def test_the_aksee_trust_script_parses_holds_base64_only_and_refuses_a_strange_host(tmp_path: Path) -> None:
    from bundler.keyfiles import keygen
    from bundler.pipeline.setup import create_site
    from bundler.site.aksee import node_placements, script_text
    from bundler.site.create import SiteSpec
    from bundler.site.state import ImportedRelease, SiteState

    keygen(tmp_path / "release")
    site = create_site(SiteSpec(tmp_path / "site", [tmp_path / "release.pub"], 1, None), as_root=True)
    state = SiteState.load(site.directory)
    state.bundles.append(ImportedRelease("store", "1.0.0", "sha256:" + "1" * 64,
                                         sources=("registry.example.com", "quay.io:443")))
    (site.directory / "cluster" / "flux").mkdir(parents=True, exist_ok=True)
    (site.directory / "cluster" / "flux" / "kustomization.yaml").write_text("resources: []\n")
    script = script_text(site, state)
    assert commands(script) - functions(script) <= CMDLETS
    paths = [path for path, _ in node_placements(site, state)]
    assert "/etc/containerd/certs.d/quay.io:443/hosts.toml" in paths and "/etc/rancher/k3s/registries.yaml" in paths
    hosts_toml = dict(node_placements(site, state))["/etc/containerd/certs.d/registry.example.com/hosts.toml"]
    assert b'ca = "/etc/pki/ca-trust/source/anchors/bundler-site.crt"' in hosts_toml  # the node's own CA path
    state.bundles.append(ImportedRelease("evil", "1", "sha256:" + "2" * 64, sources=("x'; rm -rf /; '",)))
    with pytest.raises(Exception, match="is not a host name"):
        script_text(site, state)


def test_a_report_with_a_wrong_shape_is_refused_naming_the_field() -> None:
    from bundler.kinds.updates.server import step_results

    results, host = step_results({"results": [{"sha256": "a" * 64, "status": "reboot-pending", "exit_code": 3010}],
                                  "host": {"os_build": "10.0.26100", "aksee_version": "1.9.262.0",
                                           "reboot_pending": True}})
    assert results["a" * 64].status == "reboot-pending" and results["a" * 64].exit_code == 3010
    assert host.reboot_pending is True and host.os_build == "10.0.26100"
    for bad, message in [({"results": [{"sha256": "x", "status": "installed"}]}, "each result"),
                         ({"results": [{"sha256": "a" * 64, "status": "hacked"}]}, "each result"),
                         ({"results": [{"sha256": "a" * 64, "status": "failed", "exit_code": "1"}]}, "exit_code"),
                         ({"host": {"os_build": "10'; whoami"}}, "host.os_build"),
                         ({"host": {"reboot_pending": "yes"}}, "reboot_pending")]:
        with pytest.raises(ValueError, match=message):
            step_results(json.loads(json.dumps(bad)))


def test_the_fleet_shows_windows_clients_as_it_shows_linux_ones() -> None:
    from bundler.fleet.documents import ClientSaid, SiteReceipt
    from bundler.fleet.status import SiteRow

    clients = (ClientSaid("edge-host", 0, 0, False, "1.9.262.0"), ClientSaid("pos-7", 2, 1, True, None),
               ClientSaid("till-1", 1, 0, False, None))
    site = SiteRow("store-1", SiteReceipt("store-1", "2026-12-01T00:00:00Z", "k" * 64, (), clients, None, None),
                   None, 1.0, ())
    assert site.client_lines() == ["pos-7: 2 lacking, 1 failed, restart pending", "till-1: 1 lacking",
                                  "edge-host: AKS EE 1.9.262.0"]


def test_kept_results_are_the_newest_for_known_payloads_and_at_most_the_cap() -> None:
    from bundler.kinds.updates.clients import KEPT_RESULTS, StepResult, kept_results

    known = {f"{i:064x}" for i in range(KEPT_RESULTS + 500)}
    earlier = {sha: StepResult("failed", 1, "2026-01-01T00:00:00Z") for sha in sorted(known)[:KEPT_RESULTS]}
    new = {sha: StepResult("installed", 0, "2026-01-02T00:00:00Z") for sha in sorted(known)[KEPT_RESULTS - 10:]}
    new["f" * 64] = StepResult("failed", 1, "2026-01-02T00:00:00Z")  # not a payload of this site
    kept = kept_results(earlier, new, known)
    assert len(kept) == KEPT_RESULTS and "f" * 64 not in kept
    assert all(kept[sha].status == "installed" for sha in new if sha in known)  # the newest of each, all in
