"""`images: auto`: which image references a chart declares, from values.yaml and its annotation."""

from __future__ import annotations

import yaml

from bundler.collect.charts import ChartArchive, declared_images, helm_config

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
