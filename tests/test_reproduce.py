"""The reproduction pipeline: end to end on the smoke preset, resume, corruption, verdicts.

The oracles here are structural (every claim appears with a computed verdict, every
figure is a real image, the stored numbers are those the analysis functions return)
and behavioural (resume recomputes exactly what is missing or corrupt). The numbers
themselves are tested against their own oracles in the modules' tests.
"""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest

from nrnn_theory.cli import main as cli_main
from nrnn_theory.experiments import pipeline
from nrnn_theory.experiments.claims import regularizer_gap_evidence, zoo_evidence, zoo_table
from nrnn_theory.experiments.report import render_markdown
from nrnn_theory.experiments.store import ResultStore
from nrnn_theory.experiments.zoo import PRESETS


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke reproduction through the CLI (module-scoped: it trains models)."""
    out = tmp_path_factory.mktemp("repro") / "run"
    code = cli_main(["reproduce", "--preset", "smoke", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_smoke_reproduction_writes_report_figures_and_results(smoke_run):
    out = smoke_run
    md = (out / "report.md").read_text()
    for key in pipeline.CLAIMS:
        assert f"**{key}**" in md
    assert "*supported*" in md or "*inconclusive*" in md or "*not supported*" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    first = html.split("data:image/png;base64,")[1].split("'")[0].split('"')[0]
    assert base64.b64decode(first)[:8] == PNG_MAGIC
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 5
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    store = ResultStore(out / "results")
    preset = PRESETS["smoke"]
    for model in preset.models:
        for seed in preset.seeds:
            assert store.status(f"digits/{model}/seed{seed}/analysis") == "ok"
            assert store.status(f"digits/{model}/seed{seed}/train") == "ok"
    entry = store.load(f"digits/nrnn_small/seed{preset.seeds[0]}/analysis")
    assert entry.meta["config"]["preset"] == "smoke"
    assert entry.meta["version"]
    assert 0.0 <= entry.data["test_accuracy"] <= 1.0
    assert entry.data["nrnn_family"] is True
    assert store.load(f"digits/lstm/seed{preset.seeds[0]}/analysis").data["Q"] is None


def test_rerun_without_resume_refuses_and_changes_nothing(smoke_run):
    before = (smoke_run / "report.md").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        pipeline.reproduce("smoke", out=smoke_run, progress=False, log=lambda _: None)
    assert (smoke_run / "report.md").read_bytes() == before
    assert cli_main(["reproduce", "--preset", "smoke", "--out", str(smoke_run), "--quiet"]) == 2


def test_resume_with_another_preset_is_refused(smoke_run):
    with pytest.raises(ValueError, match="preset"):
        pipeline.reproduce("quick", out=smoke_run, resume=True, progress=False)


def test_resume_recomputes_only_what_is_missing_or_corrupt(smoke_run, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(smoke_run, out)
    store = ResultStore(out / "results")
    victim = "digits/lipschitz/seed1/analysis"
    path = (out / "results" / victim).with_suffix(".json")
    path.write_text(path.read_text()[:-40])  # truncated: fails its checksum
    assert store.status(victim) == "corrupt"
    study = next(iter(pipeline._studies()), None)
    if study is not None:
        (out / "results" / "theory" / f"{study}.json").unlink()

    import nrnn_theory.experiments.zoo as zoo

    trained = []
    real_train = zoo.train_member
    studies_run = []
    real_studies = pipeline._studies

    def counting_train(member, *args, **kwargs):
        trained.append(member.name)
        return real_train(member, *args, **kwargs)

    def counting_studies():
        out_ = {}
        for name, s in real_studies().items():

            def run(*a, _s=s, _n=name, **k):
                studies_run.append(_n)
                return _s.run(*a, **k)

            out_[name] = type(s)(**{**s.__dict__, "run": run})
        return out_

    monkeypatch.setattr(zoo, "train_member", counting_train)
    monkeypatch.setattr(pipeline, "_studies", counting_studies)
    result = pipeline.reproduce("smoke", out=out, resume=True, progress=False, log=lambda _: None)
    assert trained == ["lipschitz"]
    assert studies_run == ([study] if study is not None else [])
    assert store.status(victim) == "ok"
    assert set(result.verdicts) == set(pipeline.CLAIMS)


def test_out_folder_with_foreign_content_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a reproduction"):
        pipeline.reproduce("smoke", out=tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "results").exists()


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        pipeline.reproduce("huge", out=tmp_path / "x")


# ------------------------------------------------------------------ verdict rules
def _records(noisy_trace, twin_trace, *, key="hessian_trace"):
    def rec(seed, value):
        return ({"seed": seed, key: value, "test_accuracy": 0.9}, {})

    return {
        "nrnn_small": [rec(s, v) for s, v in enumerate(noisy_trace)],
        "lipschitz": [rec(s, v) for s, v in enumerate(twin_trace)],
    }


@pytest.mark.parametrize(
    ("noisy", "twin", "verdict"),
    [
        ([1.0, 1.1, 0.9, 1.0], [2.0, 2.2, 2.1, 1.9], "supported"),
        ([3.0, 3.1, 2.9, 3.0], [2.0, 2.2, 2.1, 1.9], "not supported"),
        ([1.0, 3.0, 1.5, 2.6], [2.0, 2.2, 2.1, 1.9], "inconclusive"),
        ([1.0], [2.0], "inconclusive"),
    ],
)
def test_flatness_verdict_follows_the_paired_interval(noisy, twin, verdict):
    lines = zoo_evidence(_records(noisy, twin), "digits")["C3a"]
    assert lines[0].verdict == verdict
    assert "Hessian trace lower" in lines[0].label


@pytest.mark.parametrize("missing", [None, "nan", "inf"])
def test_missing_values_give_inconclusive_not_an_error(missing):
    # None: not computed; "nan"/"inf": how the store writes non-finite floats (e.g. a
    # median margin over no correctly classified example).
    recs = _records([1.0, missing, 1.0], [2.0, 2.0, missing])
    line = zoo_evidence(recs, "digits")["C3a"][0]
    assert line.verdict == "inconclusive"  # one paired seed left
    table = zoo_table(recs, "digits")
    assert table.rows[0][4] == "1 ± 0"  # the two finite traces of nrnn_small


@pytest.mark.parametrize(
    ("pairs", "verdict"),
    [
        ([(0.100, 0.1004, 1e-3), (0.2, 0.199, 1e-3)], "supported"),
        ([(0.100, 0.300, 1e-3), (0.2, 0.600, 1e-3)], "not supported"),
        ([(0.100, 0.1004, 1e-3), (0.2, 0.600, 1e-3)], "inconclusive"),
        ([], "inconclusive"),
    ],
)
def test_regularizer_gap_rule(pairs, verdict):
    recs = {
        "nrnn_small": [
            ({"seed": i, "predicted_gap": p, "mc_gap": m, "mc_gap_stderr": se}, {})
            for i, (p, m, se) in enumerate(pairs)
        ]
    }
    assert regularizer_gap_evidence(recs).verdict == verdict


def test_stored_numbers_match_a_direct_analysis(smoke_run):
    """The pipeline stores what analyse_member computes for the saved checkpoint."""
    import torch

    from nrnn_theory.experiments.model_analysis import evaluation_subset
    from nrnn_theory.experiments.zoo import reference_noise
    from nrnn_theory.regularizer import explicit_regularizer
    from nrnn_theory.train import latest_checkpoint, load_checkpoint, load_task, params_from_module

    preset = PRESETS["smoke"]
    seed = preset.seeds[0]
    ck = load_checkpoint(
        latest_checkpoint(smoke_run / "runs" / "digits" / "nrnn_small" / f"seed{seed}")
    )
    data = load_task("digits", seed=0)
    xs, ys = evaluation_subset(data, preset.n_eval, seed=seed)
    params = params_from_module(ck.model.eval(), dtype=torch.float64)
    reg = explicit_regularizer(params, xs.to(torch.float64), ys, reference_noise())
    stored = ResultStore(smoke_run / "results").load(f"digits/nrnn_small/seed{seed}/analysis")
    np.testing.assert_allclose(stored.data["regularizer"], float(reg.total.mean()), rtol=1e-10)
    np.testing.assert_allclose(
        stored.arrays["regularizer_per_example"], reg.total.numpy(), rtol=1e-10
    )
    json.dumps(stored.data)  # JSON-ready


# ------------------------------------------------------------------ thin scripts
def _script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zoo_scripts_reuse_a_finished_run_and_redraw_its_figures(smoke_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(smoke_run, out)
    for png in (out / "figures").glob("*.png"):
        png.unlink()
    before = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    assert (
        _script("analysis/zoo.py").main(["--smoke", "--out", str(out), "--resume", "--quiet"]) == 0
    )
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == before
    assert _script("figures/fig_zoo.py").main(["--out", str(out)]) == 0
    names = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert names == sorted(f"{k}_digits" for k in pipeline._FIGURES)
    with pytest.raises(FileExistsError):
        _script("analysis/zoo.py").main(["--smoke", "--out", str(out), "--quiet"])


def test_derivation_script_prints_the_checked_expansion(capsys):
    assert _script("analysis/derive_regularizer.py").main(["--smoke", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "eps^2" in printed
    assert "= 0" in printed  # simplify(derived - formula) = 0


# ------------------------------------------- matched twin, step effect, rule, banner
def _zoo(values: dict[str, list[float]], key: str = "test_accuracy"):
    return {
        m: [({"seed": s, key: v, "num_classes": 10}, {}) for s, v in enumerate(vals)]
        for m, vals in values.items()
    }


def test_noisy_models_are_paired_with_the_matched_twin_and_the_step_is_context():
    from nrnn_theory.experiments.claims import FIXED_TWIN, TWIN
    from nrnn_theory.experiments.report import ClaimSection

    recs = _zoo(
        {
            "nrnn_high": [0.95, 0.94, 0.96],
            TWIN: [0.89, 0.88, 0.90],  # the noise gains 6 points at equal parametrization
            FIXED_TWIN: [0.95, 0.96, 0.94],  # the learned step *loses* 6 points
        }
    )
    c5 = zoo_evidence(recs, "digits")["C5"]
    noisy_lines = [e for e in c5 if e.counts]
    step_lines = [e for e in c5 if not e.counts]
    assert noisy_lines and all("learned step, no noise" in e.label for e in noisy_lines)
    clean = next(e for e in noisy_lines if "clean accuracy not worse" in e.label)
    assert clean.verdict == "supported"  # clean accuracy not worse than the twin
    assert "FGSM" in noisy_lines[0].label  # the headline line first
    assert step_lines and "step effect" in step_lines[0].label
    assert step_lines[0].verdict == "not supported"  # learned vs fixed step: lower accuracy
    # the uncounted step line does not turn the claim's verdict
    section = ClaimSection("C5", "t", "s", "th", (clean, step_lines[0]))
    assert section.verdict == "supported"
    # without the matched twin, the fixed-step model is the twin (older runs)
    old = zoo_evidence(_zoo({"nrnn_high": [0.9, 0.9], FIXED_TWIN: [0.9, 0.9]}), "digits")
    assert all("fixed step" in e.label for e in old["C5"])


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        (["supported", "supported"], "supported"),
        (["supported", "inconclusive"], "inconclusive"),
        (["supported", "not supported"], "not supported"),
        (["inconclusive", "not supported"], "not supported"),
        ([], "inconclusive"),
    ],
)
def test_combination_rule_counts_only_counted_lines(verdicts, combined):
    from nrnn_theory.experiments.report import (
        COMBINATION_RULE,
        ClaimSection,
        Evidence,
        Report,
        render_markdown,
    )

    lines = [Evidence(f"l{i}", "m", "i", "e", v, "r") for i, v in enumerate(verdicts)]
    context = Evidence("step", "m", "i", "e", "not supported", "r", counts=False)
    section = ClaimSection("C5", "t", "s", "th", (*lines, context))
    assert section.verdict == combined
    md = render_markdown(Report("T", {}, (section, section)))
    assert md.count(COMBINATION_RULE) == 1 and "not supported (context)" in md


def test_scale_banner_for_near_chance_or_still_improving_models():
    from nrnn_theory.experiments.claims import TWIN, scale_warnings
    from nrnn_theory.experiments.report import Report, render_html, render_markdown

    good = _zoo({"nrnn_high": [0.95, 0.94], TWIN: [0.9, 0.9]})
    assert scale_warnings(good, "digits") == []
    chance = _zoo({"nrnn_high": [0.12, 0.15], TWIN: [0.9, 0.9]})
    (warning,) = scale_warnings(chance, "digits")
    assert "near chance" in warning and "NRNN (high noise)" in warning

    def history(vals):
        return {"records": [{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(vals)]}

    rising = {TWIN: [history([0.5, 0.6, 0.7])] * 2}
    flat = {TWIN: [history([0.5, 0.8, 0.8])] * 2}
    (warning,) = scale_warnings(good, "digits", rising)
    assert "still improving" in warning and "2/2 seeds" in warning
    assert scale_warnings(good, "digits", flat) == []
    md = render_markdown(Report("T", {}, (), banner=(warning,)))
    assert "this scale cannot test the claims" in md and warning in md
    assert "this scale cannot test the claims" in render_html(
        Report("T", {}, (), banner=(warning,)), "."
    )


def test_report_has_a_table_of_contents_with_working_anchors():
    import re

    from nrnn_theory.experiments.report import ClaimSection, Report, Table, anchor, render_html

    claims = (ClaimSection("C3c", "noise favours larger margins", "s", "th", ()),)
    report = Report("T", {}, claims, (Table("Zoo summary: digits", ("a",), ()),))
    md = render_markdown(report)
    assert "- [C3c: noise favours larger margins](#c3c-noise-favours-larger-margins)" in md
    assert anchor("Zoo summary: digits") == "zoo-summary-digits"
    page = render_html(report, ".")
    for target in re.findall(r"href='#([^']+)'", page):
        assert f"id='{target}'" in page  # every contents link lands on a heading


def test_zoo_table_counts_the_seeds_with_a_learned_step_below_zero():
    def rec(seed, flagged, learned=True):
        check = {"learned": learned, "flagged": flagged}
        return ({"seed": seed, "test_accuracy": 0.9, "step_check": check}, {})

    recs = {"nrnn_high": [rec(0, True), rec(1, False)], "lipschitz": [rec(0, False, False)]}
    table = zoo_table(recs, "digits")
    col = table.columns.index("learned step ≤ 0")
    assert [row[col] for row in table.rows] == ["1/2", "n/a"]


def test_report_states_the_papers_direction_one_number_format_and_aligned_numbers():
    """A synthetic report (no training): every claim section has its "Paper (abstract):"
    line before its evidence table, no "+-" remains, numeric columns are right-aligned."""
    from nrnn_theory.experiments.claims import TWIN
    from nrnn_theory.experiments.report import ClaimSection, Report, render_html

    keys = ("test_accuracy", "hessian_trace", "regularizer", "lyapunov_top")
    values = {"nrnn_high": [0.9, 0.91, 0.92], TWIN: [0.88, 0.9, 0.9]}
    recs = {
        m: [
            ({"seed": s, "num_classes": 10} | {k: v * (i + 1) for i, k in enumerate(keys)}, {})
            for s, v in enumerate(vals)
        ]
        for m, vals in values.items()
    }
    evidence = zoo_evidence(recs, "digits")
    claims = tuple(
        ClaimSection(
            key, c.title, c.statement, c.theory, tuple(evidence.get(key, ())), (), (), c.direction
        )
        for key, c in pipeline.CLAIMS.items()
    )
    report = Report("T", {}, claims, (zoo_table(recs, "digits"),))
    md = render_markdown(report)
    assert "+-" not in md and "eps^2" not in md and "<=" not in md
    sections = md.split("\n## ")[1:]
    for c in claims:
        (section,) = [s for s in sections if s.startswith(f"{c.key}: ")]
        paper = [line for line in section.splitlines() if line.startswith("Paper (abstract): ")]
        assert len(paper) == 1 and c.direction in paper[0] and "Measured: " in paper[0]
        assert section.index("Paper (abstract): ") < section.index("| evidence |")
        assert "|---|---:|---:|---|---|" in section  # measured and interval right-aligned
    flat = next(s for s in sections if s.startswith("C3a: "))
    assert "Measured: [digits] NRNN (high noise) vs learned step, no noise: Hessian trace" in flat
    assert "; interval [" in flat  # the line's own interval, not recomputed
    assert "Measured: not measured at this scale." in next(s for s in sections if s[:3] == "C4:")
    zoo = next(s for s in sections if s.startswith("Zoo summary"))
    assert "|---|" + "---:|" * (len(report.tables[0].columns) - 1) in zoo
    assert "λ₁ clean" in zoo and "±" in zoo
    page = render_html(report, ".")
    assert page.count("Paper (abstract): ") == len(claims)
    assert '<th style="text-align:right">measured</th>' in page
    assert '<td style="text-align:right">' in page and "+-" not in page
