"""The reproduction report: claims as a checklist with evidence, in Markdown and HTML.

The report is built from records (:class:`ClaimSection`, :class:`Table`) that the
pipeline computes from stored results; this module only renders them. The HTML page
embeds its figures (base64 PNG) so it can be opened offline as a single file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nrnn_theory._record import Result
from nrnn_theory.experiments.verdicts import Verdict


__all__ = [
    "COMBINATION_RULE",
    "EVIDENCE_COLUMNS",
    "EVIDENCE_NUMERIC",
    "ClaimSection",
    "Evidence",
    "anchor",
    "measured_summary",
    "paper_line",
    "Report",
    "Table",
    "combine_verdicts",
    "render_html",
    "render_markdown",
]

_MARK = {"supported": "[x]", "not supported": "[ ]", "inconclusive": "[~]"}

#: How a claim's verdict follows from its evidence lines (:func:`combine_verdicts`),
#: stated once in every report.
COMBINATION_RULE = (
    "A claim's verdict combines the verdicts of its counted evidence lines: "
    "'not supported' if any line is not supported; 'supported' if every line is "
    "supported; otherwise (or with no counted line) 'inconclusive'. Lines marked "
    "'(context)' — the effect of the learned step, which is not a claim of the paper — "
    "are shown beside the claim and not counted."
)


#: The columns of a claim's evidence table, and those of them that hold numbers (shown
#: right-aligned, formatted to significant digits by :func:`~nrnn_theory.experiments._helpers.fmt`).
EVIDENCE_COLUMNS = ("evidence", "measured", "95% interval", "effect", "verdict")
EVIDENCE_NUMERIC = frozenset({"measured", "95% interval"})


def combine_verdicts(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict from several: any "not supported" wins, then all "supported", else
    "inconclusive" (also for an empty list).

    Examples
    --------
    >>> combine_verdicts(["supported", "inconclusive"])
    'inconclusive'
    """
    verdicts = list(verdicts)
    if any(v == "not supported" for v in verdicts):
        return "not supported"
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    return "inconclusive"


@dataclass(frozen=True)
class Evidence(Result):
    """One measured line of evidence for a claim.

    ``measured`` and ``interval`` are pre-formatted numbers (the pipeline formats them
    from the stored results); ``verdict`` is the verdict of this line alone. A line with
    ``counts=False`` is context shown beside the claim (e.g. the learned step's effect)
    and does not enter the claim's verdict (:data:`COMBINATION_RULE`).
    """

    label: str
    measured: str
    interval: str
    effect: str
    verdict: Verdict
    rule: str
    counts: bool = True

    @property
    def shown_verdict(self) -> str:
        """The verdict as the tables show it (``"(context)"`` appended if not counted)."""
        return self.verdict if self.counts else f"{self.verdict} (context)"


@dataclass(frozen=True)
class ClaimSection(Result):
    """A claim of the paper with the evidence computed for it.

    ``direction`` is the direction of the effect the paper's abstract states,
    qualitatively (never a number of the paper); the report shows it beside the
    measured effect of the first counted evidence line (:func:`paper_line`).
    """

    key: str
    title: str
    statement: str
    theory: str
    evidence: tuple[Evidence, ...]
    figures: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    direction: str = ""

    @property
    def verdict(self) -> Verdict:
        """The combined verdict of the counted evidence (:func:`combine_verdicts`)."""
        return combine_verdicts(e.verdict for e in self.evidence if e.counts)


def _is_measured(e: Evidence) -> bool:
    return not (e.measured in ("", "n/a") or e.measured.startswith("no "))


def measured_summary(section: ClaimSection) -> str:
    """The measured effect of the claim's first counted evidence line, with its interval
    and effect size as the table shows them, or ``"not measured at this scale"`` (no
    counted line, or its first has no measured value).

    Examples
    --------
    >>> e = Evidence("a vs b", "1 vs 2 (Δ = -1, n = 3)", "[-1.5, -0.5]", "n/a", "supported", "")
    >>> measured_summary(ClaimSection("C", "t", "s", "th", (e,)))
    'a vs b: 1 vs 2 (Δ = -1, n = 3); interval [-1.5, -0.5]'
    >>> measured_summary(ClaimSection("C", "t", "s", "th", ()))
    'not measured at this scale'
    """
    counted = [e for e in section.evidence if e.counts]
    if not counted or not _is_measured(counted[0]):
        return "not measured at this scale"
    e = counted[0]
    out = f"{e.label}: {e.measured}"
    if any(ch.isdigit() for ch in e.interval):
        out += f"; interval {e.interval}"
    else:
        out += "; no interval"
    if e.effect and e.effect != "n/a":
        out += f"; {e.effect}"
    return out


def paper_line(section: ClaimSection) -> str:
    """``"Paper (abstract): <direction>. Measured: <measured_summary>."``"""
    direction = section.direction or "(no direction stated)"
    return f"Paper (abstract): {direction}. Measured: {measured_summary(section)}."


@dataclass(frozen=True)
class Table(Result):
    """A plain table (title, column headers, rows of pre-formatted cells).

    ``numeric`` names the columns that hold numbers: the report right-aligns them.
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""
    numeric: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report(Result):
    """Everything the report shows."""

    title: str
    meta: dict[str, str]
    claims: tuple[ClaimSection, ...]
    tables: tuple[Table, ...] = ()
    figures: dict[str, str] = field(default_factory=dict)  # name -> caption
    #: Warnings shown above the verdicts (e.g. "this scale cannot test the claims").
    banner: tuple[str, ...] = ()


def anchor(heading: str) -> str:
    """The anchor of a report heading (GitHub's rule: lower case, spaces to hyphens,
    punctuation dropped); the HTML page gives its headings the same ids."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _contents(report: Report) -> list[str]:
    heads = ["Claims at a glance"] + [f"{c.key}: {c.title}" for c in report.claims]
    heads += [t.title for t in report.tables]
    return heads


def _md_table(
    columns: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[str] = ()
) -> list[str]:
    """A Markdown table; the columns named in ``numeric`` are right-aligned (``---:``)."""

    def esc(c: str) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    numeric = set(numeric)
    out = [
        "| " + " | ".join(esc(c) for c in columns) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|",
    ]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: Report, *, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are referenced as ``<figure_dir>/<name>.png``."""
    lines = [f"# {report.title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in report.meta.items()]
    for warning in report.banner:
        lines += ["", f"> **Warning: this scale cannot test the claims.** {warning}"]
    lines += ["", "## Contents", ""]
    lines += [f"- [{h}](#{anchor(h)})" for h in _contents(report)]
    lines += ["", "## Claims at a glance", ""]
    for c in report.claims:
        lines.append(f"- {_MARK[c.verdict]} **{c.key}** {c.title}: *{c.verdict}*")
    lines += ["", "`[x]` supported, `[ ]` not supported, `[~]` inconclusive at this scale.", ""]
    lines += [COMBINATION_RULE, ""]
    for c in report.claims:
        lines += [
            f"## {c.key}: {c.title}",
            "",
            f"> {c.statement}",
            "",
            f"Theory: {c.theory}. Verdict: **{c.verdict}**.",
            "",
            paper_line(c),
            "",
        ]
        rows = [(e.label, e.measured, e.interval, e.effect, e.shown_verdict) for e in c.evidence]
        lines += _md_table(EVIDENCE_COLUMNS, rows, EVIDENCE_NUMERIC)
        rules = sorted({e.rule for e in c.evidence if e.rule})
        if rules:
            lines += ["", "Rules: " + "; ".join(rules) + "."]
        for note in c.notes:
            lines += ["", note]
        for name in c.figures:
            caption = report.figures.get(name, name)
            lines += ["", f"![{caption}]({figure_dir}/{name}.png)", "", f"*{caption}*"]
        lines.append("")
    for t in report.tables:
        lines += [f"## {t.title}", ""] + _md_table(t.columns, t.rows, t.numeric)
        if t.note:
            lines += ["", t.note]
        lines.append("")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
font-size:.9rem;text-align:left}th{background:#f3f3f3}
.supported{color:#1a7f37;font-weight:600}.not-supported{color:#b42318;font-weight:600}
.inconclusive{color:#9a6700;font-weight:600}
blockquote{border-left:4px solid #ddd;margin:0;padding:.2rem .8rem;color:#555}
.banner{background:#fff4e5;border:1px solid #f0b429;padding:.5rem .8rem}
figure{margin:1rem 0}img{max-width:100%}figcaption{font-size:.9rem;color:#555}
"""


def _cls(verdict: str) -> str:
    return verdict.replace(" ", "-")


_RIGHT = ' style="text-align:right"'


def _html_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    verdict_col: int = -1,
    numeric: Iterable[str] = (),
):
    """An HTML table; the columns named in ``numeric`` are right-aligned."""
    numeric = set(numeric)
    right = [c in numeric for c in columns]
    out = [
        "<table><tr>"
        + "".join(
            f"<th{_RIGHT if r else ''}>{html.escape(c)}</th>"
            for c, r in zip(columns, right, strict=True)
        )
        + "</tr>"
    ]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = ""
            if verdict_col >= 0 and i == verdict_col:
                cls = f' class="{_cls(str(c).removesuffix(" (context)"))}"'
            if i < len(right) and right[i]:
                cls += _RIGHT
            cells.append(f"<td{cls}>{html.escape(str(c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(report: Report, figure_dir: str | Path) -> str:
    """The report as one self-contained HTML page with figures embedded as base64 PNG.

    Raises
    ------
    FileNotFoundError
        If a figure a claim refers to is missing from ``figure_dir``.
    """
    figure_dir = Path(figure_dir)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1><ul>",
    ]
    parts += [
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in report.meta.items()
    ]
    parts.append("</ul>")
    for warning in report.banner:
        parts.append(
            "<p class='banner'><b>Warning: this scale cannot test the claims.</b> "
            f"{html.escape(warning)}</p>"
        )
    parts.append("<h2>Contents</h2><ul>")
    parts += [f"<li><a href='#{anchor(h)}'>{html.escape(h)}</a></li>" for h in _contents(report)]
    parts.append("</ul>")
    parts.append(f"<h2 id='{anchor('Claims at a glance')}'>Claims at a glance</h2>")
    parts.append(
        _html_table(
            ("claim", "title", "verdict"),
            [(c.key, c.title, c.verdict) for c in report.claims],
            verdict_col=2,
        )
    )
    parts.append(f"<p>{html.escape(COMBINATION_RULE)}</p>")
    for c in report.claims:
        head = f"{c.key}: {c.title}"
        parts.append(f"<h2 id='{anchor(head)}'>{html.escape(head)}</h2>")
        parts.append(f"<blockquote>{html.escape(c.statement)}</blockquote>")
        parts.append(
            f"<p>Theory: {html.escape(c.theory)}. Verdict: "
            f"<span class='{_cls(c.verdict)}'>{c.verdict}</span>.</p>"
        )
        parts.append(f"<p class='paper'>{html.escape(paper_line(c))}</p>")
        rows = [(e.label, e.measured, e.interval, e.effect, e.shown_verdict) for e in c.evidence]
        parts.append(_html_table(EVIDENCE_COLUMNS, rows, verdict_col=4, numeric=EVIDENCE_NUMERIC))
        rules = sorted({e.rule for e in c.evidence if e.rule})
        if rules:
            parts.append("<p><small>Rules: " + html.escape("; ".join(rules)) + ".</small></p>")
        parts += [f"<p>{html.escape(n)}</p>" for n in c.notes]
        for name in c.figures:
            png = figure_dir / f"{name}.png"
            if not png.exists():
                raise FileNotFoundError(f"figure_dir: expected {png} for claim {c.key}, not found")
            data = base64.b64encode(png.read_bytes()).decode()
            caption = html.escape(report.figures.get(name, name))
            parts.append(
                f"<figure><img alt='{caption}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
    for t in report.tables:
        parts.append(f"<h2 id='{anchor(t.title)}'>{html.escape(t.title)}</h2>")
        parts.append(_html_table(t.columns, t.rows, numeric=t.numeric))
        if t.note:
            parts.append(f"<p><small>{html.escape(t.note)}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
