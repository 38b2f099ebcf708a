"""Sphinx configuration of the nrnn_theory documentation.

Build with ``make docs`` (warnings are errors, references are nitpicky). The API
reference is generated at build time from the module list ``api_modules`` below by the
local extension ``_ext/api_pages.py``; documenting a new public module is one line in
that list.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import nrnn_theory  # noqa: E402  (after the path set-up; the package itself is installed)


# -- Project -------------------------------------------------------------------------
project = "nrnn_theory"
author = "the nrnn_theory authors"
copyright = f"{date.today().year}, {author}"
release = nrnn_theory.__version__
version = release

# -- Extensions ----------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",  # MyST markdown (myst_parser) plus executed MyST notebooks
    "api_pages",  # docs/_ext/api_pages.py: the generated API reference
]

source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}
root_doc = "index"
templates_path = ["_templates"]
# _citations.md is a working table for the maintainers (where each section of the
# former THEORY.md now lives); it is not part of the site.
exclude_patterns = ["_build", "**/_citations.md", "Thumbs.db", ".DS_Store"]

# Warnings are errors (``-W``) and every cross-reference must resolve (``-n``).
nitpicky = True
# Objects of other projects are written as plain names in docstrings; the build is
# offline (no intersphinx inventories can be fetched), so these are not links.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(torch|numpy|np|scipy|sympy|matplotlib|pandas|hypothesis|functools|collections"
        r"|typing|pathlib|os|json|dataclasses)(\..*)?",
    ),
]

# -- The API reference (docs/_ext/api_pages.py) ----------------------------------------
# One line per public module, in the order of the reference. An object re-exported by
# several of these modules is documented once, under the first module that lists it in
# ``__all__`` (so ``nrnn_theory.rollout``, not ``nrnn_theory.dynamics.rollout``); the
# other modules' pages link to that page.
api_modules = [
    "nrnn_theory",
    "nrnn_theory.dynamics",
    "nrnn_theory.conventions",
    "nrnn_theory.regularizer",
    "nrnn_theory.objectives",
    "nrnn_theory.flatness",
    "nrnn_theory.lyapunov",
    "nrnn_theory.stability",
    "nrnn_theory.reachability",
    "nrnn_theory.sdp_certificates",
    "nrnn_theory.margins",
    "nrnn_theory.verification",
    "nrnn_theory.attacks",
    "nrnn_theory.robustness",
    "nrnn_theory.losses",
    "nrnn_theory.results",
    "nrnn_theory.train",
    "nrnn_theory.train.models",
    "nrnn_theory.train.adapters",
    "nrnn_theory.train.data",
    "nrnn_theory.train.loop",
    "nrnn_theory.train.penalties",
    "nrnn_theory.train.checkpoint",
    "nrnn_theory.train.distributed",
    "nrnn_theory.train.user_files",
    "nrnn_theory.train.analysis",
    "nrnn_theory.experiments",
    "nrnn_theory.experiments.executor",
    "nrnn_theory.testing",
    "nrnn_theory.testing.strategies",
    "nrnn_theory.testing.problems",
    "nrnn_theory.testing.assertions",
    "nrnn_theory.testing.tolerances",
    "nrnn_theory.symbolic",
    "nrnn_theory.symbolic.dynamics",
    "nrnn_theory.symbolic.regularizer",
    "nrnn_theory.symbolic.stability",
    "nrnn_theory.symbolic.lyapunov",
    "nrnn_theory.symbolic.margins",
]
api_output_dir = "api/generated"

# -- autodoc / numpydoc ----------------------------------------------------------------
# Types are documented in the numpydoc "Parameters" sections (with shapes); signatures
# stay short and readable.
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "bysource"}
autodoc_preserve_defaults = True
autosummary_generate = False  # the pages come from api_pages, not from autosummary
numpydoc_show_class_members = False  # members are documented by autodoc's :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# Docstring checks that fail the build: every parameter documented (PR01), no
# documented parameter that does not exist (PR02), no public object without a
# docstring (GL08). Result records document their fields under "Attributes" (they are
# returned, not built by hand), so PR01 does not apply to them.
numpydoc_validation_checks = {"PR01", "PR02", "GL08"}
numpydoc_validation_overrides = {"PR01": [r"\n\s*Attributes\n\s*-{10}"]}
# typing aliases (e.g. objectives.LossFn) cannot carry a __doc__; their ``#:`` comment is
# what documents them, so the docstring checks skip them.
numpydoc_validation_exclude = {r"\.LossFn$"}

# -- MyST and myst-nb ------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_heading_slug_func = "slugs.heading_slug"  # docs/_ext/slugs.py
myst_dmath_double_inline = True
# Tutorials are executed at every build, and a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"nrnn_theory {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "environment": []}
html_show_sourcelink = False
