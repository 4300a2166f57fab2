"""Windows hosts and AKS Edge Essentials: what a Windows payload carries (`WindowsInfo`: KB, the OS
builds and architecture it is for, the updates it requires first, whether it restarts the host, and
for an AKS EE fragment the AKS EE versions it takes a node from and to), the fixed table of install
steps (`STEPS`: the only commands a Windows client ever runs, chosen by kind, never text from a
bundle), and a client's plan: the approved payloads it lacks, in the order they install.

Facts the table follows: `.msu` installs with `wusa.exe FILE /quiet /norestart`; `.cab` with DISM
(`dism.exe /Online /Add-Package /PackagePath:FILE /Quiet /NoRestart`); `.msi` with `msiexec.exe /i FILE
/qn /norestart`; exit code 3010 (and 1641) means installed, restart required. An AKS EE fragment
(`akswindows*_<hash>.exe`, "AKS-EE Windows Fragment") runs with `-y` and stages into
`C:\\Program Files\\AKS-Edge\\update-cache`; then `Start-AksEdgeUpdate`, and the control plane and worker
node updates; AKS EE upgrades one version at a time, so fragments chain: from -> to -> ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bundler import names
from bundler.jsontypes import Doc
from bundler.untrusted import Obj

if TYPE_CHECKING:
    from bundler.profile import Checker, Map

WINDOWS_KINDS = ("msu", "cab", "msi", "aksee-fragment")
AKSEE = "aksee-fragment"
KB_RE = re.compile(r"^KB[0-9]{6,8}$")
BUILD_RE = re.compile(r"^[0-9]{1,5}(?:\.[0-9]{1,6}){1,3}$")  # 10.0.26100, 10.0.26100.2033
ARCHES = ("amd64", "arm64")
AKSEE_VERSION_RE = re.compile(r"^[0-9]{1,4}(?:\.[0-9]{1,6}){1,3}$")  # 1.9.262.0
RESTART_CODES = (3010, 1641)  # installed; the host must restart to finish


@dataclass(frozen=True)
class Step:
    """How a Windows client installs one kind: `program` with `arguments`, where `{file}` stands for
    the downloaded file's full path (named `<sha256><extension>` by the client, never by the bundle)."""
    kind: str
    program: str
    arguments: tuple[str, ...]
    extension: str

    def to_dict(self) -> Doc:
        return {"kind": self.kind, "program": self.program, "arguments": list(self.arguments),
                "extension": self.extension}


STEPS: tuple[Step, ...] = (
    Step("msu", "wusa.exe", ("{file}", "/quiet", "/norestart"), ".msu"),
    Step("cab", "dism.exe", ("/Online", "/Add-Package", "/PackagePath:{file}", "/Quiet", "/NoRestart"), ".cab"),
    Step("msi", "msiexec.exe", ("/i", "{file}", "/qn", "/norestart"), ".msi"),
    Step(AKSEE, "{file}", ("-y",), ".exe"),  # the fragment stages itself into AKS EE's update cache
)
STEP_OF = {step.kind: step for step in STEPS}
# what the AKS EE mode runs after staging a fragment, in order (AKS EE's own PowerShell module)
AKSEE_COMMANDS = ("Start-AksEdgeUpdate", "Start-AksEdgeControlPlaneUpdate", "Start-AksEdgeWorkerNodeUpdate")


def build_key(build: str) -> tuple[int, ...]:
    return tuple(int(part) for part in build.split("."))


@dataclass(frozen=True)
class WindowsInfo:
    """What a Windows payload says about itself (profile `windows:`; bundle.json `windows`)."""
    kb: str | None = None
    os_min: str | None = None  # the lowest OS build it is for (10.0.26100)
    os_max: str | None = None
    arch: str | None = None  # amd64, arm64; None: any
    requires: tuple[str, ...] = ()  # update names installed before it (checkpoint cumulative updates)
    reboot: bool = False  # it may restart the host
    aksee_from: str | None = None  # an AKS EE fragment: the version it takes a node from
    aksee_to: str | None = None

    def to_dict(self) -> Doc:
        doc: Doc = {"requires": list(self.requires), "reboot": self.reboot}
        for key, value in (("kb", self.kb), ("os_min", self.os_min), ("os_max", self.os_max), ("arch", self.arch),
                           ("aksee_from", self.aksee_from), ("aksee_to", self.aksee_to)):
            if value is not None:
                doc[key] = value
        return doc

    @classmethod
    def parse(cls, d: Obj) -> WindowsInfo:
        """From bundle.json (untrusted): each field checked as the profile checks it."""
        info = cls(d.string("kb", names.rule(KB_RE, "a KB number (KB1234567)"), default=None),
                   d.string("os_min", names.rule(BUILD_RE, "a Windows build (10.0.26100)"), default=None),
                   d.string("os_max", names.rule(BUILD_RE, "a Windows build (10.0.26100)"), default=None),
                   d.string("arch", names.one_of(*ARCHES), default=None),
                   d.strings("requires", names.update_name),
                   d.boolean("reboot", default=False),
                   d.string("aksee_from", names.rule(AKSEE_VERSION_RE, "an AKS EE version"), default=None),
                   d.string("aksee_to", names.rule(AKSEE_VERSION_RE, "an AKS EE version"), default=None))
        if (info.aksee_from is None) != (info.aksee_to is None):
            raise d.fail("aksee_from and aksee_to go together")
        return info

    def fits(self, build: str | None, arch: str | None) -> bool:
        """For a host of this OS build and architecture (unknown ones: yes)."""
        if arch and self.arch and arch != self.arch:
            return False
        if build and self.os_min and build_key(build) < build_key(self.os_min):
            return False
        return not (build and self.os_max and build_key(build) > build_key(self.os_max))


def parse_windows(check: Checker, m: Map, kind: str, where: str) -> WindowsInfo | None:
    """`windows:` of a `spec.updates` item: only for Windows kinds; an AKS EE fragment must say the
    versions it takes a node from and to."""
    if "windows" not in m:
        if kind == AKSEE:
            check.fail(m.line, f"{where}: an AKS EE fragment needs windows.aksee (from, to): upgrades chain "
                               "one version at a time")
        return None
    line = m.lines["windows"]
    if kind not in WINDOWS_KINDS:
        check.fail(line, f"{where}.windows is for {', '.join(WINDOWS_KINDS)} payloads, not {kind}")
        return None
    w = check.mapping(m["windows"], line, f"{where}.windows", {"kb", "osBuild", "arch", "requires", "reboot", "aksee"},
                      set())
    if w is None:
        return None
    here = f"{where}.windows"
    kb = check.string(w, "kb", here, KB_RE, "a KB number (KB1234567)")
    os_min = os_max = None
    if "osBuild" in w:
        b = check.mapping(w["osBuild"], w.lines["osBuild"], f"{here}.osBuild", {"min", "max"}, set())
        if b is not None:
            os_min = check.string(b, "min", f"{here}.osBuild", BUILD_RE, "a Windows build (10.0.26100)")
            os_max = check.string(b, "max", f"{here}.osBuild", BUILD_RE, "a Windows build (10.0.26100)")
            if os_min and os_max and build_key(os_min) > build_key(os_max):
                check.fail(w.lines["osBuild"], f"{here}.osBuild: min {os_min} is above max {os_max}")
    arch = w.get("arch")
    if arch is not None and arch not in ARCHES:
        check.fail(w.lines["arch"], f"{here}.arch {arch!r} is not one of {', '.join(ARCHES)}")
        arch = None
    requires = check.strings(w, "requires", here, names.UPDATE_NAME_RE, "an update name")
    reboot = w.get("reboot", False)
    if not isinstance(reboot, bool):
        check.fail(w.lines["reboot"], f"{here}.reboot must be true or false")
        reboot = False
    aksee_from = aksee_to = None
    if "aksee" in w:
        if kind != AKSEE:
            check.fail(w.lines["aksee"], f"{here}.aksee is for {AKSEE} payloads, not {kind}")
        a = check.mapping(w["aksee"], w.lines["aksee"], f"{here}.aksee", {"from", "to"}, {"from", "to"})
        if a is not None:
            aksee_from = _version(check, a, "from", f"{here}.aksee")
            aksee_to = _version(check, a, "to", f"{here}.aksee")
    elif kind == AKSEE:
        check.fail(line, f"{here}: an AKS EE fragment needs aksee (from, to): upgrades chain one version at a time")
    return WindowsInfo(kb, os_min, os_max, str(arch) if arch else None, requires, reboot, aksee_from, aksee_to)


def _version(check: Checker, m: Map, key: str, where: str) -> str | None:
    value = m.get(key)
    if isinstance(value, int | float):  # 1.9 unquoted in YAML
        check.fail(m.lines[key], f"{where}.{key} must be a string (quote it: \"{value}\")")
        return None
    return check.string(m, key, where, AKSEE_VERSION_RE, "an AKS EE version (1.9.262.0)")


def check_requirements(check: Checker, items: Sequence[tuple[str, WindowsInfo | None, int]], line: int) -> None:
    """Across a profile's updates: each name a payload requires is one of them, and the requirements
    form no cycle (nothing could install first)."""
    known = {name for name, _, _ in items}
    graph = {name: info.requires for name, info, _ in items if info is not None}
    for name, info, item_line in items:
        for needed in info.requires if info is not None else ():
            if needed not in known:
                check.fail(item_line, f"updates {name}: windows.requires {needed!r} is not an update of this profile")
    if cycle := find_cycle(graph):
        check.fail(line, f"updates: windows.requires go round in a circle ({' -> '.join(cycle)}): nothing could "
                         "install first")


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A cycle in `requires` (names, in order, the first repeated at the end), or []."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if state.get(start) is None and (found := visit(start)):
            return found
    return []
