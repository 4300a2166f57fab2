"""`bundler site install`: a systemd unit that starts the site's services at boot and restarts them
on failure.

The unit runs `bundler site up DIR --foreground`: the same start-up as a technician's `site up`
(order, health checks, upgrades), then it watches the services and exits non-zero when one stops
answering, so systemd (Restart=on-failure) stops what is left of the unit and starts it again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bundler.fsutil import atomic_write
from bundler.site.config import load_site

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


def unit_name(directory: Path) -> str:
    """`bundler-site-<directory name>.service`, in the characters systemd allows in a unit name."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", directory.resolve().name).strip("-.") or "site"
    return f"bundler-site-{name}.service"


def unit_text(directory: Path) -> str:
    site_dir = directory.resolve()
    command = f"{sys.executable} -m bundler.cli site"
    return (
        "[Unit]\n"
        f"Description=bundler site {site_dir}: registry, Git server, update cache\n"
        "Wants=network-online.target\nAfter=network-online.target docker.service\n"
        "StartLimitIntervalSec=300\nStartLimitBurst=10\n\n"
        "[Service]\nType=simple\n"
        f"WorkingDirectory={site_dir}\n"
        f"ExecStart={command} up {site_dir} --foreground\n"
        f"ExecStop={command} down {site_dir}\n"
        "Restart=on-failure\nRestartSec=5\nTimeoutStartSec=120\n"
        "UMask=0077\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


def install_unit(directory: Path, unit_dir: Path = DEFAULT_UNIT_DIR) -> Path:
    """Write the unit for the site in `directory` into `unit_dir`; return its path."""
    load_site(directory)  # a site, or a clear error
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / unit_name(directory)
    atomic_write(path, unit_text(directory).encode())
    return path
