"""The site's status page (`GET /` with the site's credentials) and the fleet's HTML report, loaded
in Debian's Chromium through Selenium: what a technician and a release engineer see (the bundle,
its version, a client lacking an approved update), text from a bundle shown escaped, never run;
anonymous requests refused. Screenshots are saved in each test's tmp dir."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from bundler.oci.client import RegistryClient
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory, missing
from tests.helpers import credentials

EVIL = "<script>alert('x')</script>"


@pytest.fixture
def browser() -> Iterator[object]:
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        missing("chromium and chromium-driver (Debian)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                 "--disable-dev-shm-usage", "--window-size=390,1400"):  # a phone's width
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site(cli: Callable[..., Run], keys: Keys, registry: Registry, tmp_path: Path, make_site: SiteFactory) -> Path:
    """A default site running one release: an image and an update approved for line-1 whose
    version (free text in a profile) is a script tag."""
    im.push_image(RegistryClient(registry.host), "store/pos", "1.0", [im.random_layer(50_000, 90)], oci=True)
    (tmp_path / "agent.bin").write_bytes(b"agent\n")
    (tmp_path / "store.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: store, version: 1.0.0}\n"
        f"spec:\n  images:\n    - {registry.host}/store/pos:1.0\n  updates:\n"
        f"    - path: agent.bin\n      name: agent\n      metadata: {{version: \"{EVIL}\"}}\n      approve: [line-1]\n")
    built = cli("build", tmp_path / "store.yaml", "-o", tmp_path / "store.bundle.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    directory = make_site("site", "--group", "line-1", "--name", "store-7", up=True)
    assert cli("import", tmp_path / "store.bundle.tar", "--site", directory).code == 0
    return directory


def enroll(cli: Callable[..., Run], site: Path) -> str:
    r = cli("updates", "enroll", "till-7", "--group", "line-1", "--site", site, "--json")
    assert r.code == 0, r.err
    return str(json.loads(r.out)["token"])


def http_url(cli: Callable[..., Run], site: Path) -> str:
    return str(json.loads(cli("site", "status", site, "--json").out)["services"]["git"]["url"]).removesuffix("/git/")


def visible_text(driver: object) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)  # type: ignore[attr-defined]


def test_the_site_page_shows_what_the_site_runs_to_its_credentials_only(
        cli: Callable[..., Run], site: Path, browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    base = http_url(cli, site)
    ca = str(site / "pki" / "ca.pem")
    assert requests.get(f"{base}/", verify=ca, timeout=10).status_code == 401  # anonymous
    assert requests.get(f"{base}/", verify=ca, auth=("site", "wrong"), timeout=10).status_code == 401
    report = requests.post(f"{base}/updates/api/report", verify=ca, timeout=10, json={"installed": []},
                           headers={"Authorization": f"Bearer {enroll(cli, site)}"})
    assert report.status_code == 200

    user, password = credentials(site)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})  # type: ignore[attr-defined]
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders",  # type: ignore[attr-defined]
                            {"headers": {"Authorization": f"Basic {token}"}})
    browser.get(f"{base}/")  # type: ignore[attr-defined]
    browser.save_screenshot(str(tmp_path / "site-page.png"))  # type: ignore[attr-defined]
    text = visible_text(browser)
    assert "Site store-7" in text
    assert "store 1.0.0" in text and "store/pos:1.0" in text  # the release and what it holds
    assert "registry" in text and "healthy" in text and "NOT answering" not in text
    assert "till-7" in text and "line-1" in text  # a client of line-1 ...
    assert f"agent {EVIL}" in text  # ... lacking the approved update, whose version is shown as text
    assert browser.find_elements(By.TAG_NAME, "script") == []  # type: ignore[attr-defined]
    assert (tmp_path / "site-page.png").stat().st_size > 10_000
    overflow = browser.execute_script(  # type: ignore[attr-defined]
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0  # readable on a phone-wide window: nothing wider than the screen


def test_the_fleet_report_in_the_same_look(cli: Callable[..., Run], site: Path, browser: object,
                                          tmp_path: Path) -> None:
    base = http_url(cli, site)
    requests.post(f"{base}/updates/api/report", verify=str(site / "pki" / "ca.pem"), timeout=10,
                  json={"installed": []}, headers={"Authorization": f"Bearer {enroll(cli, site)}"})
    assert cli("site", "receipt", site, "-o", tmp_path / "store-7.json").code == 0
    fleet = tmp_path / "fleet"
    assert cli("fleet", "enroll", site / "site.pub", "--fleet", fleet).code == 0
    assert cli("fleet", "add", tmp_path / "store-7.json", "--fleet", fleet).code == 0
    r = cli("fleet", "status", "--fleet", fleet, "--html", tmp_path / "fleet.html")
    assert r.code == 0, r.err
    browser.get((tmp_path / "fleet.html").as_uri())  # type: ignore[attr-defined]
    browser.save_screenshot(str(tmp_path / "fleet.png"))  # type: ignore[attr-defined]
    text = visible_text(browser)
    assert "Fleet status" in text and "store-7" in text and "1.0.0" in text
    assert "till-7: 1 lacking" in text and "healthy" in text
    assert (tmp_path / "fleet.png").stat().st_size > 5_000



def test_the_fleet_page_at_190_stores_shows_the_summary_the_rollout_and_the_problem_stores_first(
        cli: Callable[..., Run], tmp_path: Path, browser: object) -> None:
    """190 stores' receipts, each signed by its own site key: most run 1.5.0, some 1.4.0; three report
    a failed sync, five receipts are two days old, two disks are nearly full, one service is down. In
    a 1280x1000 window the summary (versions and counts), the rollout's waves and every store with a
    problem are on the first screen; then every store, one line each, in natural order."""
    from selenium.webdriver.common.by import By

    from devtools.fleet_receipts import paper_fleet

    world = paper_fleet(tmp_path)
    fleet = world.fleet
    troubled = world.troubled
    r = cli("fleet", "status", "--fleet", fleet.directory, "--html", tmp_path / "fleet.html")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "190 sites; store: 1.5.0 on 177, 1.4.0 on 13; 11 with a problem", lines[0]
    assert "wave canary (open): 2 done, 0 failed, 0 pending" in r.out
    assert "wave rest (open): 175 done, 3 failed, 10 pending" in r.out  # 1.4.0 stores: pending, or failed
    rows = [line.split()[0] for line in lines if line.startswith("store-")]
    assert set(rows[:11]) == troubled  # problems first
    rest = rows[11:]
    assert rest.index("store-2") < rest.index("store-10") < rest.index("store-100")  # natural order

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # type: ignore[attr-defined]
                            {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
    browser.get((tmp_path / "fleet.html").as_uri())  # type: ignore[attr-defined]
    browser.save_screenshot(str(tmp_path / "fleet-190.png"))  # type: ignore[attr-defined]
    seen = browser.execute_script("""  // the cells wholly inside the first screen, in one round trip
        return [...document.querySelectorAll("td")].filter(td => { const r = td.getBoundingClientRect();
            return r.top >= 0 && r.bottom <= window.innerHeight; }).map(td => td.innerText).join(" ");""")
    for name in troubled:
        assert name in seen, f"{name} is not on the first screen"
    assert "does not match its descriptor" in seen and "disk 96% full" in seen and "receipt 50 h old" in seen
    summary = browser.find_element(By.TAG_NAME, "section").text  # type: ignore[attr-defined]
    assert "1.5.0 on 177, 1.4.0 on 13; 11 with a problem" in summary and "175" in seen  # versions, waves
