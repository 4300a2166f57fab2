"""Real OS packages for the tests and the demo: .deb built with `dpkg-deb --build`, .rpm with `rpmbuild`."""

from __future__ import annotations

import subprocess
from pathlib import Path


def build_deb(workdir: Path, name: str, version: str = "1.0.0", arch: str = "all") -> Path:
    root = workdir / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Release Engineering "
        f"<release@example.com>\nDescription: {name} for the edge site\n The tests install this.\n")
    tool = root / "usr" / "bin" / name
    tool.write_text(f"#!/bin/sh\necho {name} {version}\n")
    tool.chmod(0o755)
    target = workdir / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(target)], check=True,
                   capture_output=True)
    return target


def build_rpm(workdir: Path, name: str, version: str = "1.0.0") -> Path:
    top = workdir / "rpmbuild"
    for sub in ("SPECS", "BUILD", "RPMS", "SRPMS", "SOURCES", "BUILDROOT"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    spec = top / "SPECS" / f"{name}.spec"
    spec.write_text(f"""Name: {name}
Version: {version}
Release: 1
Summary: {name} for the edge site
License: MIT
BuildArch: noarch
AutoReqProv: no

%description
{name}, built by the tests.

%install
mkdir -p %{{buildroot}}/usr/bin
printf '#!/bin/sh\\necho {name} {version}\\n' > %{{buildroot}}/usr/bin/{name}
chmod 755 %{{buildroot}}/usr/bin/{name}

%files
/usr/bin/{name}
""")
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", "_build_id_links none", "-bb", str(spec)],
                   check=True, capture_output=True)
    return next((top / "RPMS" / "noarch").glob(f"{name}-{version}-1*.rpm"))
