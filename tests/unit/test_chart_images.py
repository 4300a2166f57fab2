"""`images: auto`: which image references a chart declares, from values.yaml and its annotation."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from bundler.errors import IntegrityError
from bundler.kinds.charts.collect import MAX_UNPACKED, ChartArchive, declared_images, helm_config, read_archive

D = "sha256:" + "c" * 64


def test_values_forms_and_annotation() -> None:
    values = {
        "image": "nginx:1.25",
        "api": {"image": {"registry": "ghcr.io", "repository": "org/api", "tag": "2.1"}},
        "worker": {"image": {"repository": "bitnami/worker", "tag": ""}},  # empty tag: the appVersion
        "pinned": {"image": {"registry": "quay.io", "repository": "org/pinned", "digest": D}},
        "ingress": {"repository": "https://charts.example.com"},  # no tag, registry or digest: not an image
        "bad": {"image": "Not A Reference"},
        "list": [{"image": "busybox:1.36"}],
    }
    annotation = yaml.safe_dump([{"name": "db", "image": "postgres:16"}, {"name": "dup", "image": "nginx:1.25"}])
    archive = ChartArchive({"name": "app", "version": "1.0.0", "appVersion": "3.4.5",
                            "annotations": {"artifacthub.io/images": annotation}}, values, frozenset())
    valid, invalid = declared_images(archive)
    assert valid == ["postgres:16", "nginx:1.25", "ghcr.io/org/api:2.1", "bitnami/worker:3.4.5",
                     f"quay.io/org/pinned@{D}", "busybox:1.36"]
    assert invalid == ["Not A Reference"]


def test_helm_config_keeps_helms_field_order_and_drops_empties() -> None:
    metadata = {"version": "1.0.0", "name": "app", "apiVersion": "v2", "description": "", "type": "application"}
    config = helm_config(metadata)
    assert config == b'{"name":"app","version":"1.0.0","apiVersion":"v2","type":"application"}'


class Zeros(io.RawIOBase):
    """`size` zero bytes, produced as read (a big member without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def chart_tgz(extra: Callable[[tarfile.TarFile], None]) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        chart = b"apiVersion: v2\nname: bomb\nversion: 1.0.0\n"
        info = tarfile.TarInfo("bomb/Chart.yaml")
        info.size = len(chart)
        tar.addfile(info, io.BytesIO(chart))
        extra(tar)
    return out.getvalue()


def test_a_chart_archive_that_inflates_past_the_limit_is_refused_without_holding_it() -> None:
    def big_member(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("bomb/templates/big.yaml")
        info.size = MAX_UNPACKED + (1 << 20)
        tar.addfile(info, Zeros(info.size))

    tgz = chart_tgz(big_member)
    assert len(tgz) < MAX_UNPACKED // 100  # small on the wire
    tracemalloc.start()
    with pytest.raises(IntegrityError, match="inflates past"):
        read_archive(tgz, "bomb.tgz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 20, peak  # read as a stream, never whole


def test_a_pax_header_claiming_gigabytes_in_a_chart_is_refused() -> None:
    def pax_claim(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, 2 << 30
        tar.fileobj.write(info.tobuf(tarfile.USTAR_FORMAT) + bytes(4096))  # type: ignore[union-attr]

    tracemalloc.start()
    with pytest.raises(IntegrityError, match=r"bomb\.tgz"):
        read_archive(chart_tgz(pax_claim), "bomb.tgz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < MAX_UNPACKED + (64 << 20), peak
