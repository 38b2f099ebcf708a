"""Heading anchors of the MyST pages (``myst_heading_slug_func`` in ``conf.py``).

Like MyST's default (lower case, punctuation dropped, spaces to hyphens), except that
dashes inside words count as hyphens: "Euler–Maruyama" gives ``euler-maruyama``, not
``eulermaruyama``. Code and docstrings cite these anchors
(``docs/theory/conventions.md#euler-maruyama-sde``), so they must not change silently;
``tests/test_docs.py`` checks the ones listed in ``docs/theory/_citations.md``.
"""

import re


def heading_slug(text: str) -> str:
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
