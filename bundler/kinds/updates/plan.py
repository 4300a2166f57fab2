"""A Windows client's plan: the approved payloads it lacks, in the order they install (each after
what it requires; AKS EE fragments one version at a time, from the version the node reports), each
with its step from the fixed table (windows.STEPS); what it cannot take yet is held, saying why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bundler.jsontypes import Doc
from bundler.kinds.updates.catalog import CatalogEntry
from bundler.kinds.updates.windows import AKSEE, STEP_OF, STEPS, WINDOWS_KINDS, WindowsInfo


@dataclass
class Plan:
    """What one Windows client installs next, in order; `held`: approved payloads it cannot take yet
    and why (a requirement not approved for its group, another OS build)."""
    steps: list[Doc] = field(default_factory=list)
    held: list[dict[str, str]] = field(default_factory=list)
    reboot_pending: bool = False

    def to_dict(self) -> Doc:
        return {"reboot_pending": self.reboot_pending, "steps": self.steps, "held": self.held,
                "install_steps": [step.to_dict() for step in STEPS]}


def plan_for(approved: Sequence[CatalogEntry], installed: set[str], *, mode: str, build: str | None,
             arch: str | None, aksee_version: str | None, reboot_pending: bool) -> Plan:
    """The approved catalog entries a client lacks (not in `installed`: sha256s it reported), for its
    OS build and architecture, ordered: each after what it requires (then by KB and name); in `aksee`
    mode the fragments that chain from the node's AKS EE version, one version at a time. A client
    with a restart pending gets nothing until it has restarted."""
    result = Plan(reboot_pending=reboot_pending)
    kinds = (AKSEE,) if mode == "aksee" else tuple(k for k in WINDOWS_KINDS if k != AKSEE)
    entries = [e for e in approved if e.kind in kinds]
    infos = {e.sha256: e.windows or WindowsInfo() for e in entries}
    wanted = []
    for e in entries:
        if e.sha256 in installed:
            continue
        if not infos[e.sha256].fits(build, arch):
            result.held.append({"name": e.name, "sha256": e.sha256,
                                "why": f"not for this host (OS build {build or '?'}, {arch or '?'})"})
            continue
        wanted.append(e)
    pending: CatalogEntry | None = None
    if mode == "aksee":
        done = [e for e in entries if e.sha256 in installed]  # a fragment applied moves the chain on
        ordered = _chain(wanted, done, infos, aksee_version, result)
        pending = next((e for e in ordered if e in done), None)
    else:
        ordered = _by_requirements(wanted, infos, {e.name for e in approved if e.sha256 in installed}, result)
    if not reboot_pending:
        result.steps = [{**step_of(e, infos[e.sha256]), **({"pending_update": True} if e is pending else {})}
                        for e in ordered]
    return result


def step_of(entry: CatalogEntry, info: WindowsInfo) -> Doc:
    return {"name": entry.name, "version": entry.version, "kind": entry.kind, "sha256": entry.sha256,
            "size": entry.size, "url": f"/updates/blobs/sha256/{entry.sha256}", "step": STEP_OF[entry.kind].kind,
            "reboot": info.reboot, **({"kb": info.kb} if info.kb else {}),
            **({"aksee_from": info.aksee_from, "aksee_to": info.aksee_to} if info.aksee_to else {})}


def _by_requirements(wanted: list[CatalogEntry], infos: Mapping[str, WindowsInfo], done: set[str],
                     result: Plan) -> list[CatalogEntry]:
    """Topological order over `requires` (ties: KB number, then name and version); a payload whose
    requirement is neither installed nor in the plan is held."""
    offered = {e.name for e in wanted}
    held = True
    pool = list(wanted)
    while held:  # a held payload may hold what requires it
        held = False
        for e in list(pool):
            missing = [r for r in infos[e.sha256].requires if r not in done and r not in offered]
            if missing:
                pool.remove(e)
                offered.discard(e.name)
                result.held.append({"name": e.name, "sha256": e.sha256,
                                    "why": f"requires {', '.join(missing)}, not installed and not approved for "
                                           "this group"})
                held = True
    ordered: list[CatalogEntry] = []
    placed = set(done)
    while pool:
        ready = sorted((e for e in pool if all(r in placed for r in infos[e.sha256].requires)),
                       key=lambda e: (infos[e.sha256].kb or "", e.name, e.version))
        if not ready:  # a cycle: the build refuses one, a hand-made catalog could hold one
            for e in pool:
                result.held.append({"name": e.name, "sha256": e.sha256, "why": "its requirements go round"})
            break
        ordered.append(ready[0])
        placed.add(ready[0].name)
        pool.remove(ready[0])
    return ordered


def _chain(wanted: list[CatalogEntry], done: list[CatalogEntry], infos: Mapping[str, WindowsInfo],
           version: str | None, result: Plan) -> list[CatalogEntry]:
    """The one fragment that takes the node from the version it reports (AKS EE upgrades one version
    at a time, and only the node's own version says how far it got): a fragment is offered only to a
    node at its `from`. One the client reported applied while the node is still at its `from` (staged,
    its update not done) is offered again, marked `pending_update`: the next step is that update,
    never the next fragment. Every other fragment is held, saying why."""
    here = [e for e in [*wanted, *done] if version is not None and infos[e.sha256].aksee_from == version]
    step = max(here, key=lambda e: (_version_key(infos[e.sha256].aksee_to), e in wanted, e.version), default=None)
    for e in wanted:
        if e is step:
            continue
        start = infos[e.sha256].aksee_from
        why = ("the node's AKS EE version is not known: the client reports it" if version is None
               else f"takes a node from {start}; this node is at {version}: offered once the node reports {start}")
        if step is not None and step in done:
            why += f" (the update of {step.name}, staged, is pending)"
        result.held.append({"name": e.name, "sha256": e.sha256, "why": why})
    return [] if step is None else [step]


def _version_key(version: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in (version or "0").split("."))
