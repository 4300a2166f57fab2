"""The Windows client the site hands out (`bundler site client windows`): one PowerShell script for
Windows PowerShell 5.1 and PowerShell 7, with no module to install, and its configuration file.

The script is the same text for every site and client: nothing from a bundle is ever in it. Its
install steps are generated from the one table in the project (windows.STEPS, which the tests read
too); what it installs comes from the site at run time as data (the plan: sha256, size, kind), and a
downloaded file is named by its sha256 and the kind's extension, never by the bundle. It pins the
site's CA by its SHA-256 fingerprint (the configuration holds the CA certificate and the pin), keeps
its downloads in a folder only SYSTEM and the Administrators may write (its ACL set each run),
downloads with resume (HTTP Range), hashes each payload right before it runs it (a file found under
its name with other bytes is deleted and fetched again), runs the step for the payload's kind,
reports each result (installed, failed with the exit code, reboot-pending on 3010/1641), stops at the
first failure and while a restart is pending, and is safe to run again (a scheduled task). -WhatIf
prints the plan and changes nothing. -AksEdge stages the one fragment that takes the node from its
version, runs AKS EE's update commands (windows.AKSEE_COMMANDS), and reports the fragment installed
only once the node reports the version it leads to (else failed: the next plan offers it again).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.kinds.updates.windows import AKSEE_COMMANDS, RESTART_CODES, STEPS
from bundler.site.config import SiteConfig

SCRIPT = "bundler-updates.ps1"
TEMPLATE = "bundler-updates.ps1.in"
CONFIG = "bundler-client.json"


def _ps_string(value: str) -> str:
    """A PowerShell single-quoted string (a quote doubled): only the project's own table goes in."""
    return "'" + value.replace("'", "''") + "'"


def steps_table() -> str:
    """The install table as a PowerShell hashtable literal, from windows.STEPS."""
    rows = []
    for step in STEPS:
        arguments = ", ".join(_ps_string(a) for a in step.arguments)
        rows.append(f"    {_ps_string(step.kind)} = @{{ Program = {_ps_string(step.program)}; "
                    f"Arguments = @({arguments}); Extension = {_ps_string(step.extension)} }}")
    return "@{\n" + "\n".join(rows) + "\n}"


def pem_sha256(pem: str) -> str:
    """The SHA-256 of a PEM certificate's DER bytes (what the script pins)."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def client_config(site: SiteConfig, client: str, group: str, token: str) -> Doc:
    ca = site.ca_file.read_text()
    return {"site": site.http_url, "client": client, "group": group, "token": token, "ca_pem": ca,
            "ca_sha256": pem_sha256(ca)}


def write_client(site: SiteConfig, client: str, group: str, token: str, out: Path) -> tuple[Path, Path]:
    """OUT/bundler-updates.ps1 and OUT/bundler-client.json (mode 0600: it holds the client's token)."""
    out.mkdir(parents=True, exist_ok=True)
    script, config = out / SCRIPT, out / CONFIG
    atomic_write(script, script_text().encode())
    atomic_write(config, json.dumps(client_config(site, client, group, token), indent=2).encode(), mode=0o600)
    return script, config


def script_sha256() -> str:
    return hashlib.sha256(script_text().encode()).hexdigest()


def script_text() -> str:
    restart = ", ".join(str(code) for code in RESTART_CODES)
    aksee = "\n".join(f"            {command} -Force" if command == "Start-AksEdgeUpdate" else f"            {command}"
                      for command in AKSEE_COMMANDS)
    template = (Path(__file__).parent / TEMPLATE).read_text()  # a PowerShell file, @@...@@ filled in here
    return template.replace("@@STEPS@@", steps_table()).replace("@@RESTART@@", restart).replace("@@AKSEE@@", aksee)
