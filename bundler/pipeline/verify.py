"""`bundler verify --site DIR`: the site's trust policy, and whether the site would refuse the bundle
(the rules an import applies: pipeline/rules.py)."""

from __future__ import annotations

from pathlib import Path

from bundler.bundle.verify import VerifyReport, verify_file
from bundler.pipeline.rules import KindAdmission, SiteRules
from bundler.site.config import load_site
from bundler.site.state import SiteState


def verify_for_site(bundle: Path, site_dir: Path, jobs: int) -> VerifyReport:
    """A rollback, a claimed tag, a delta whose base the site lacks, an image its image keys cover
    without a signature, a name another bundle owns: each a problem in the report."""
    site = load_site(site_dir)
    rules = SiteRules.for_verify(site, SiteState.load(site.directory))
    admission = KindAdmission(site)
    report = verify_file(bundle, site.policy(), jobs, rules, admission)
    report.judged = admission.judged
    return report
