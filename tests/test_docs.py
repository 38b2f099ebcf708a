"""The documentation builds without a warning, and the built site has what it promises.

One Sphinx build (``-W --keep-going -n``, tutorials executed) per session, in the slow
tier: it takes a minute or two on the two-core machines. The build runs in a
subprocess, so pytest's warning filters do not apply to Sphinx's own imports.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import nrnn_theory
import nrnn_theory.experiments
import nrnn_theory.symbolic
import nrnn_theory.testing
import nrnn_theory.train
import nrnn_theory.train.analysis


pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOCS_PACKAGES = ("sphinx", "pydata_sphinx_theme", "numpydoc", "myst_nb")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built HTML site (built once for this module)."""
    missing = [m for m in DOCS_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        # make test installs the docs extra: a missing package is a set-up bug, not a skip
        pytest.fail(
            f"the docs extra is not installed (missing {missing}): pip install -e '.[docs]'"
        )
    out = tmp_path_factory.mktemp("docs") / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q"]
    proc = subprocess.run(
        [*cmd, str(DOCS), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    if proc.returncode != 0:
        pytest.fail(f"sphinx-build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return out


def _inventory(site: Path) -> dict[str, str]:
    """``name -> uri`` of the Python objects in the site's ``objects.inv``."""
    raw = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four plain-text header lines, then zlib
        header_end = raw.index(b"\n", header_end) + 1
    entries = {}
    for line in zlib.decompress(raw[header_end:]).decode().splitlines():
        m = re.match(r"(?x)(.+?)\s+(\S+):(\S+)\s+(-?\d+)\s+(\S*)\s+(.*)", line)
        if m and m.group(2) == "py":
            name, uri = m.group(1), m.group(5)
            entries[name] = uri.replace("$", name) if uri.endswith("$") else uri
    return entries


def test_docs_build_without_warnings(site):
    for page in ("index", "theory/index", "tutorials/quickstart", "api/index", "changelog"):
        assert (site / f"{page}.html").is_file(), page


def test_every_public_name_has_an_api_page(site):
    inventory = _inventory(site)
    modules = [
        nrnn_theory,
        nrnn_theory.train,
        nrnn_theory.train.analysis,
        nrnn_theory.experiments,
        nrnn_theory.symbolic,
        nrnn_theory.testing,
    ]
    missing = []
    for module in modules:
        for name in module.__all__:
            if name.startswith("_"):
                continue
            obj = getattr(module, name)
            here = f"{module.__name__}.{name}"
            # re-exports are documented once, under the first module exporting them
            canonical = [k for k in (here, f"nrnn_theory.{name}") if k in inventory]
            if not canonical and not isinstance(obj, str | int | float | tuple):
                missing.append(here)
    assert not missing, f"no API page for {missing}"


def test_executed_tutorial_shows_outputs(site):
    html = (site / "tutorials" / "quickstart.html").read_text()
    assert "cell_output" in html and "Q-hat:" in html  # the cells ran and printed


@pytest.mark.parametrize(
    ("page", "printed"),
    [
        ("own_rnn", "Measured leading exponents"),
        ("analyse_checkpoint", "standard errors:"),
        ("read_report", "Claims at a glance"),
        ("property_testing", "gap vs last_step_only"),
    ],
)
def test_every_tutorial_ran(site, page, printed):
    html = (site / "tutorials" / f"{page}.html").read_text()
    assert "cell_output" in html and printed in html


def test_citation_table_anchors_exist(site):
    """Every page#anchor in docs/theory/_citations.md exists in the built pages."""
    table = (DOCS / "theory" / "_citations.md").read_text()
    rows = re.findall(r"`docs/theory/(\w+)\.md` \| [^|]*?\(`#([\w-]+)`\)[^|]*\| `([\w-]+)`", table)
    assert len(rows) > 50
    for page, anchor, label in rows:
        html = (site / "theory" / f"{page}.html").read_text()
        assert f'id="{anchor}"' in html, f"{page}.html has no anchor #{anchor}"
        assert f'id="{label}"' in html, f"{page}.html has no label {label}"
