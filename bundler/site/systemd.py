"""`bundler site install`: a systemd unit that starts the site's services at boot and restarts them
on failure, as the site's own unprivileged user, hardened.

The unit runs `bundler site up DIR --foreground`: the same start-up as a technician's `site up`
(order, health checks, upgrades), then it watches the services and exits non-zero when one stops
answering, so systemd (Restart=on-failure) stops what is left of the unit and starts it again.

One unit per site NAME (site.yaml's `name`): `bundler-site-<name>.service`; installing a second site
of the same name is refused, naming the first. Paths are quoted and escaped the way systemd reads
them (`%` specifiers, `$` variables, quotes, backslashes), so a site path with a space or a `%` works.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bundler import CLI_MODULE
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write
from bundler.site.config import SiteConfig, load_site
from bundler.site.front import OPEN_FILES

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
SITE_KEY = "X-BundlerSite"  # the unit's site directory, so that a second site of one name is refused
HARDENING = (
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes", "PrivateDevices=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "ProtectClock=yes", "ProtectHostname=yes", "ProtectProc=invisible", "ProcSubset=pid", "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes", "RestrictNamespaces=yes", "LockPersonality=yes", "RemoveIPC=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",  # port 443
    "DevicePolicy=closed", "UMask=0077",
)


def unit_name(site: SiteConfig) -> str:
    """`bundler-site-<site name>.service` (site names are letters, digits, `.`, `_`, `-`: valid as is)."""
    return f"bundler-site-{site.site_name}.service"


def site_user(site: SiteConfig) -> str:
    return f"bundler-{site.site_name}"[:32].rstrip(".-")


def _specifiers(text: str) -> str:
    """`%` starts a specifier in every unit setting; `$` a variable in Exec lines."""
    return text.replace("%", "%%")


def exec_quote(argument: str) -> str:
    """One argument of an Exec line: double-quoted, C-style escapes, `%%` and `$$`."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + _specifiers(escaped).replace("$", "$$") + '"'


def unit_text(site: SiteConfig, user: str, python: str = sys.executable) -> str:
    site_dir = str(site.directory.resolve())
    if any(c in site_dir for c in "\n\r"):
        raise UsageError("a site path with a line break cannot go into a systemd unit")
    command = " ".join(exec_quote(a) for a in (python, "-m", CLI_MODULE, "site"))
    quoted = exec_quote(site_dir)
    return (
        "[Unit]\n"
        f"Description=bundler site {site.site_name}: registry, Git server, update cache\n"
        f"{SITE_KEY}={_specifiers(site_dir)}\n"
        "Wants=network-online.target\nAfter=network-online.target docker.service\n"
        "StartLimitIntervalSec=300\nStartLimitBurst=10\n\n"
        "[Service]\nType=simple\n"
        f"User={user}\nGroup={user}\n"
        f"WorkingDirectory={_specifiers(site_dir)}\n"
        f"ExecStart={command} up {quoted} --foreground\n"
        f"ExecStop={command} down {quoted}\n"
        "Restart=on-failure\nRestartSec=5\nTimeoutStartSec=120\n"
        f"LimitNOFILE={OPEN_FILES}\n"  # the front's connections (site/front.py)
        f"ReadWritePaths={quoted.replace('$$', '$')}\n"
        + "".join(f"{line}\n" for line in HARDENING)
        + "\n[Install]\nWantedBy=multi-user.target\n"
    )


def ensure_user(site: SiteConfig, user: str) -> tuple[int, int]:
    """The site's user (a system account without a login, made when missing), owning the site's files."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        if os.geteuid() != 0 or shutil.which("useradd") is None:
            raise UsageError(f"the site's user {user} does not exist, and only root can make it",
                             hint=f"run as root, or make it: useradd --system --user-group {user}") from None
        proc = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                               str(site.directory.resolve()), "--shell", "/usr/sbin/nologin", user],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BundlerError(f"useradd {user} failed: {proc.stderr.strip()[-300:]}") from None
        account = pwd.getpwnam(user)
    uid, gid = account.pw_uid, account.pw_gid
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(site.directory):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), uid, gid)
        os.chown(site.directory, uid, gid)
    return uid, gid


RUNS = ("import subprocess, sys; import bundler.cli; "  # and the services it starts with sys.executable
        "subprocess.run([sys.executable, '-c', 'import bundler.pipeline.server'], check=True, capture_output=True)")


def check_runs_as(user: str, python: str, directory: Path | None = None, hint: str | None = None) -> None:
    """The interpreter must run bundler as `user` (one under /root, say, cannot), and `user` must reach
    `directory` (the site's parent: a directory on the way closed to others stops it). A user not
    made yet is tried as `nobody` would be: nothing is changed before every check passed."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        account = pwd.getpwnam("nobody")
    reach = f"; import os; os.listdir({str(directory)!r})" if directory is not None else ""
    proc = subprocess.run(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                           python, "-c", RUNS + reach], capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        where = f" in {directory}" if directory is not None else ""
        raise UsageError(f"the site's user {user} cannot run bundler with {python}{where}: "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][:200]}",
                         hint=hint or "install bundler where every user can run it (python3 -m venv /opt/bundler; "
                                      "/opt/bundler/bin/pip install ...), then `site install --python "
                                      "/opt/bundler/bin/python`")


def install_unit(directory: Path, unit_dir: Path = DEFAULT_UNIT_DIR, user: str | None = None,
                 python: str = sys.executable) -> Path:
    """Write the unit for the site in `directory` into `unit_dir` (one per site name), make the
    site's user and give it the site's files; return the unit's path."""
    site = load_site(directory)
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / unit_name(site)
    if path.exists():
        match = re.search(rf"^{SITE_KEY}=(.*)$", path.read_text(errors="replace"), re.M)
        other = match.group(1).replace("%%", "%") if match else "another directory"
        if other != str(site.directory.resolve()):
            raise UsageError(f"{path} already runs site {site.site_name} at {other}",
                             hint="give this site another name (`name:` in its site.yaml) and install it again")
    user = user or site_user(site)
    text = unit_text(site, user, python)  # every check before anything changes: the path, the interpreter
    check_runs_as(user, python)
    ensure_user(site, user)
    atomic_write(path, text.encode())
    return path
