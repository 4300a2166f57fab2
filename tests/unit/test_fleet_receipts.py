"""Receipts of wrong shapes, signed by an enrolled site key (a buggy or hostile site): every fleet
command either takes them or refuses them (exit 3); none fails another way."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundler.errors import RefusedError, UsageError
from bundler.fleet.report import fleet_page
from bundler.fleet.status import status_of
from bundler.fleet.store import Fleet
from bundler.pipeline.fleet_plan import group_sites
from bundler.pipeline.receipt import site_receipt
from bundler.signing import generate_key, public_pem
from bundler.site.identity import load_site_key, signed
from tests.helpers import make_site


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    work = tmp_path_factory.mktemp("fleet")
    trust = work / "release.pub"
    trust.write_bytes(public_pem(generate_key().public_key()))
    site = make_site(work / "site", None, [trust], 1, name="store-1", http_listen="127.0.0.1:1",
                     registry_listen="127.0.0.1:2")
    yield site.directory, site_receipt(site.directory)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2, 1 << 70) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                           max_size=3), max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_wrong_shapes_are_taken_or_refused_never_a_crash(world: tuple[Path, dict[str, Any]], tmp_path_factory:
                                                         pytest.TempPathFactory, data: st.DataObject) -> None:
    site_dir, receipt = world
    doc = json.loads(json.dumps(receipt))
    doc.pop("signature")
    path = data.draw(st.sampled_from(["disk", "services", "bundles", "clients", "files", "disk.total", "disk.free",
                                      "services.git", "bundles.0", "created", "site", "repos", "updates"]))
    target, *rest = path.split(".")
    value = data.draw(json_values)
    if rest and isinstance(doc.get(target), dict):
        doc[target][rest[0]] = value
    elif rest and isinstance(doc.get(target), list) and doc[target]:
        doc[target][0] = value
    else:
        doc[target] = value
    work = tmp_path_factory.mktemp("f")
    fleet = Fleet(work / "fleet")
    fleet.enroll(site_dir / "site.pub")
    (work / "r.json").write_text(json.dumps(signed(doc, load_site_key(site_dir))))
    try:
        fleet.add(work / "r.json")
    except RefusedError:
        return
    fleet_page(status_of(fleet))
    with contextlib.suppress(RefusedError, UsageError):
        group_sites("store", "1.0.0", fleet.receipt_paths())
