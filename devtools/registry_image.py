"""Make a `registry:2` image in the local Docker engine when it cannot be pulled (no internet here).

The image holds Debian's Distribution registry binary and the two libraries it links, FROM scratch.
Where the upstream `registry:2` is already present (pulled on a laptop), it is used as it is.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from typing import Any

IMAGE = "registry:2"
FILES = {
    "/usr/bin/docker-registry": "bin/registry",
    "/lib/x86_64-linux-gnu/libc.so.6": "lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2": "lib64/ld-linux-x86-64.so.2",
}
CONFIG = b"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
"""
DOCKERFILE = b"""FROM scratch
COPY . /
ENTRYPOINT ["/bin/registry", "serve", "/etc/docker/registry/config.yml"]
"""


def ensure_registry_image(client: Any) -> str:
    import docker.errors

    try:
        client.images.get(IMAGE)
        return IMAGE
    except docker.errors.ImageNotFound:
        pass
    if shutil.which("docker-registry") is None:
        raise RuntimeError("registry:2 is not in the engine and docker-registry is not installed to build it")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w", dereference=True) as tar:  # ld.so is a symlink
        for source, target in FILES.items():
            tar.add(source, arcname=target)
        for name, data in (("Dockerfile", DOCKERFILE), ("etc/docker/registry/config.yml", CONFIG)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=IMAGE, rm=True)
    return IMAGE
