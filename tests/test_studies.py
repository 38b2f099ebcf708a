"""Tests of the theory-only studies: scripts, store round trip, figures, evidence rules
on hand-made entries (every verdict branch) and numeric spot checks against oracles."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nrnn_theory.experiments import STUDIES, Entry, ResultStore
from nrnn_theory.experiments._study_common import study_device
from nrnn_theory.experiments.studies import PRESETS, weighted_slope
from nrnn_theory.experiments.study_continuum import _gbm_exponent
from nrnn_theory.experiments.study_regularizer_law import LAW_FIT_POINTS, _break_point, _law_fit
from nrnn_theory.experiments.study_stabilization import (
    _measure_top_exponents,
    _unstable_model,
    _zero_crossing,
)

from _problems import em_gbm_exponent as em_gbm_oracle
from _tolerances import STATISTICAL_SIGMAS


ROOT = Path(__file__).resolve().parents[1]
VERDICTS = {"supported", "not supported", "inconclusive"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """Every study run at the smoke preset through its analysis and figure scripts."""
    out = tmp_path_factory.mktemp("studies")
    for name in STUDIES:
        analysis = _script(ROOT / "analysis" / f"theory_{name}.py")
        assert analysis.main(["--smoke", "--seed", "3", "--out", str(out)]) == 0
        figure = _script(ROOT / "figures" / f"fig_{name}.py")
        assert figure.main(["--out", str(out)]) == 0
    return out


def test_registry_matches_interface():
    assert PRESETS == ("smoke", "quick", "standard", "full")
    assert {s.claim for s in STUDIES.values()} == {"C1", "C2", "C4"}
    for name, study in STUDIES.items():
        assert study.name == name and study.title
        assert callable(study.run) and callable(study.plot) and callable(study.evidence)


@pytest.mark.parametrize("name", list(STUDIES))
def test_smoke_scripts_store_figures_evidence(smoke_store, name):
    store = ResultStore(smoke_store / "results")
    assert store.status(f"theory/{name}") == "ok"
    entry = store.load(f"theory/{name}")
    assert entry.meta["config"] == {"preset": "smoke", "seed": 3}
    for ext in ("pdf", "png"):
        path = smoke_store / "figures" / f"theory_{name}.{ext}"
        assert path.exists() and path.stat().st_size > 1000
    png = (smoke_store / "figures" / f"theory_{name}.png").read_bytes()
    assert png[:8] == PNG_MAGIC
    pdf = (smoke_store / "figures" / f"theory_{name}.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-"
    lines = STUDIES[name].evidence(entry)
    assert len(lines) >= 2
    for ev in lines:
        assert ev.verdict in VERDICTS
        assert ev.label and ev.measured and ev.rule


def test_plot_returns_written_files(smoke_store, tmp_path):
    entry = ResultStore(smoke_store / "results").load("theory/continuum")
    paths = STUDIES["continuum"].plot(entry, tmp_path / "figs")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert all(p.exists() and p.parent == tmp_path / "figs" for p in paths)
    assert paths[0].stem == "theory_continuum"


def test_run_is_reproducible_and_rejects_unknown_preset():
    threads = torch.get_num_threads()
    a = STUDIES["continuum"].run("smoke", seed=5, progress=False)
    assert torch.get_num_threads() == threads  # the single-thread section is undone
    b = STUDIES["continuum"].run("smoke", seed=5, progress=False)
    np.testing.assert_array_equal(a[1]["error"], b[1]["error"])
    np.testing.assert_array_equal(a[1]["gbm_measured"], b[1]["gbm_measured"])
    with pytest.raises(ValueError, match="preset"):
        STUDIES["continuum"].run("huge", seed=0, progress=False)


# ------------------------------------------------------------- numeric spot checks
def test_regularizer_law_smallest_eps_matches_prediction(smoke_store):
    """docs/theory/oracles.md V1: plain antithetic MC within 4 SE + c eps^4 of eps^2/2 (Q+R)."""
    entry = ResultStore(smoke_store / "results").load("theory/regularizer_law")
    a = entry.arrays
    eps = a["eps"]
    for conv in entry.data["conventions"]:
        diff = abs(a[f"{conv}/plain"][0] - a[f"{conv}/predicted"][0])
        # c eps^4 with c = 10 is far above any remainder of these O(1) models at eps = 0.01
        assert diff <= STATISTICAL_SIGMAS * a[f"{conv}/plain_stderr"][0] + 10 * eps[0] ** 4
        # the prediction is eps^2/2 (Q+R) (plus the exact mean shift for paper_code)
        d = entry.data[conv]
        np.testing.assert_allclose(
            a[f"{conv}/noise_gap"][0], 0.5 * eps[0] ** 2 * (d["Q"] + d["R"]), rtol=1e-9
        )
        # the control-variate residual shrinks with eps (O(eps^4))
        resid = np.abs(a[f"{conv}/measured"] - a[f"{conv}/predicted"])
        assert resid[0] < resid[-1]


def test_stabilization_scalar_linear_model_matches_closed_form():
    """docs/theory/oracles.md V4: measured frozen-noise exponent of the EM chain of scalar GBM
    within 4 SE of its exact value (quadrature, itself checked by Monte Carlo in
    test_oracles.py)."""
    lam, sigma, dt = 1.0, 2.0, 0.1
    mean, se = _gbm_exponent(lam, sigma, dt, horizon=100.0, paths=64, seed=11)
    exact = em_gbm_oracle(lam, sigma, dt)
    assert abs(exact - (-1.1380)) < 5e-4  # the value quoted in docs/theory/oracles.md V4
    assert abs(mean - exact) <= STATISTICAL_SIGMAS * se


def test_batched_noise_levels_equal_the_direct_noisy_chain(generator):
    """Scaling the standardized scalar draw by sigma (sigma2 = 1) is the chain with
    sigma2 = sigma: same per-path exponents as a direct call on the same draws."""
    from nrnn_theory import NoiseSpec, lyapunov_spectrum

    p = _unstable_model(3, 0.8, generator=generator, device="cpu")
    xs = torch.randn(4, 200, 2, generator=generator, dtype=torch.float64)
    sigma = 1.3
    mean, se = _measure_top_exponents(p, xs, np.array([sigma]), seed=7)
    gen = torch.Generator().manual_seed(7)
    beta = torch.randn(4, 200, generator=gen, dtype=torch.float64)
    eta = torch.zeros(4, 200, 4, dtype=torch.float64)
    eta[..., 3] = beta
    noise = NoiseSpec(epsilon=1.0, sigma2=sigma, structure="scalar")
    spec = lyapunov_spectrum(p, xs, noise=noise, k=1, eta=eta, generator=gen)
    per = spec.per_trajectory[:, 0].numpy()
    np.testing.assert_allclose(mean[0], per.mean(), rtol=1e-9)  # reduction tolerance
    np.testing.assert_allclose(se[0], per.std(ddof=1) / 2.0, rtol=1e-9)


def test_stabilization_smoke_numbers_are_consistent(smoke_store):
    a = ResultStore(smoke_store / "results").load("theory/stabilization").arrays
    lam, sigma = a["lambda_hat"], a["sigma"]
    assert (lam > 0).all()  # every model is uncertified without noise
    np.testing.assert_allclose(a["min_noise"], np.sqrt(2 * lam), rtol=1e-12)
    # certified bound lambda_hat - sigma^2/2 (docs/theory/stability.md (c)) wherever noise is on
    np.testing.assert_allclose(
        a["bound"][:, 1:], lam[:, None] - 0.5 * sigma[None, 1:] ** 2, rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(a["holds"], a["bound"] < 0)


def test_continuum_smoke_numbers(smoke_store):
    entry = ResultStore(smoke_store / "results").load("theory/continuum")
    a, d = entry.arrays, entry.data
    # first-order convergence of (Q_hat, R_hat) (the "order" band of
    # docs/contributing.md, *Tests and tolerances*)
    assert abs(d["regularizer"]["order_fine"] - 1.0) <= 0.2
    # the measured EM exponents agree with the exact chain exponents (4 SE)
    dev = np.abs(a["gbm_measured"] - a["gbm_exact"])
    assert (dev <= STATISTICAL_SIGMAS * a["gbm_stderr"]).all()
    np.testing.assert_allclose(
        a["gbm_exact"], [em_gbm_oracle(1.0, 1.0, float(x)) for x in a["gbm_dts"]], rtol=1e-8
    )


def test_law_fit_window_stops_at_a_sign_change():
    """rel = eps^2 (1 - eps/0.1): a power law below the root at 0.1, not beyond it."""
    eps = np.geomspace(0.005, 2.0, 15)
    rel = eps**2 * (1 - eps / 0.1)
    se = np.abs(rel) * 1e-3 + 1e-12
    fit, mask = _law_fit(eps, rel, se, np.ones_like(eps))
    below = int((eps < 0.1).sum())
    assert mask.sum() == min(below, LAW_FIT_POINTS) and eps[mask].max() < 0.1
    assert np.all(np.nonzero(mask)[0] == np.arange(mask.sum()))  # the smallest eps
    assert fit["slope_small_end"] == pytest.approx(2.0, abs=0.1)
    assert abs(fit["slope_small_end"] - 2) < abs(fit["slope_large_end"] - 2)


def test_helpers_on_exact_data():
    x = np.log([0.01, 0.02, 0.04, 0.08])
    y = 2.0 * x + 0.3
    f = weighted_slope(x, y, np.full(4, 0.05))
    assert f["slope"] == pytest.approx(2.0) and f["intercept"] == pytest.approx(0.3)
    assert f["chi2_dof"] == pytest.approx(0.0, abs=1e-20)
    # a known-variance fit: slope SE = sigma / sqrt(sum (x - xbar)^2)
    assert f["slope_se"] == pytest.approx(0.05 / math.sqrt(np.sum((x - x.mean()) ** 2)))
    assert math.isnan(weighted_slope([1.0, 2.0], [1.0, 2.0], [1.0, 1.0])["slope_se"])
    eps = np.array([0.1, 0.2, 0.4, 0.8])
    assert _break_point(eps, np.array([0.01, 0.04, 0.16, 0.64]), 0.1) == pytest.approx(
        0.1 * 0.1**0.5 / 0.01**0.5
    )
    assert math.isnan(_break_point(eps, np.full(4, 0.01), 0.1))
    sigma = np.array([0.0, 1.0, 2.0])
    # exponent affine in sigma^2: 1 - sigma^2/2 crosses 0 at sqrt(2)
    assert _zero_crossing(sigma, 1 - sigma**2 / 2) == pytest.approx(math.sqrt(2))
    assert math.isnan(_zero_crossing(sigma, np.array([-0.1, -0.2, -0.3])))
    assert math.isnan(_zero_crossing(sigma, np.array([1.0, 0.9, 0.8])))


# ------------------------------------------------------- evidence rules, all branches
def _entry(name: str, data: dict, arrays: dict) -> Entry:
    return Entry(name=f"theory/{name}", meta={"config": {}}, data=data, arrays=arrays)


def _law_data(**changes) -> dict:
    first = {
        "eps": 0.01,
        "predicted": 1.0e-4,
        "noise_gap": 1.0e-4,
        "plain": 1.01e-4,
        "plain_stderr": 1e-6,
        "cv_residual": 1e-9,
        "cv_stderr": 1e-10,
    }
    fit = {"slope": 2.02, "slope_se": 0.03, "intercept": 0.0, "intercept_se": 0.1}
    fit |= {"chi2_dof": 1.0, "n": 6}
    first |= changes.get("first", {})
    fit |= changes.get("fit", {})
    return {"conventions": ["sde"], "sde": {"first": first, "fit": fit, "break_eps": "nan"}}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("supported", "supported")),
        ({"first": {"plain": 1.2e-4}}, ("not supported", "supported")),
        ({"first": {"plain_stderr": 2e-5}}, ("inconclusive", "supported")),
        ({"fit": {"slope": 2.6}}, ("supported", "not supported")),
        # excluded from 2, local slope moving away from 2 as eps shrinks: a wrong order
        (
            {"fit": {"slope": 2.6, "slope_small_end": 2.8, "slope_large_end": 2.5}},
            ("supported", "not supported"),
        ),
        # excluded from 2, but the local slope approaches 2 as eps shrinks: pre-asymptotic
        (
            {"fit": {"slope": 2.6, "slope_small_end": 2.1, "slope_large_end": 2.9}},
            ("supported", "inconclusive"),
        ),
        ({"fit": {"slope_se": 0.4}}, ("supported", "inconclusive")),
        ({"fit": {"n": 2, "slope_se": "nan"}}, ("supported", "inconclusive")),
    ],
)
def test_regularizer_law_evidence_branches(changes, expected):
    lines = STUDIES["regularizer_law"].evidence(_entry("regularizer_law", _law_data(**changes), {}))
    assert tuple(e.verdict for e in lines) == expected


def _stab_arrays(measured_cert: float, measured0: float = 1.0, holds_last: bool = True):
    sigma = np.array([0.0, 1.0, 2.0])
    lam = np.array([1.0])
    bound = lam[:, None] - 0.5 * sigma[None, :] ** 2
    measured = np.array([[measured0, 0.3, measured_cert]])
    return {
        "sigma": sigma,
        "lambda_hat": lam,
        "min_noise": np.sqrt(2 * lam),
        "measured": measured,
        "stderr": np.full((1, 3), 0.01),
        "bound": bound,
        "holds": np.array([[False, False, holds_last]]),
        "crossing": np.array([_zero_crossing(sigma, measured[0])]),
        "slack_dt": np.array([0.01]),
    }


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        (_stab_arrays(-1.5), ("supported", "supported", "supported")),
        # measured above bound + slack at the certified point: unsound, never stabilized
        (_stab_arrays(0.5), ("not supported", "not supported", "not supported")),
        # stable but above the bound (-1): soundness fails, stabilization still seen
        (_stab_arrays(-0.5), ("not supported", "supported", "supported")),
        # nothing certified on the grid
        (_stab_arrays(-1.5, holds_last=False), ("inconclusive",) * 3),
        # not clearly unstable without noise
        (_stab_arrays(-1.5, measured0=0.01), ("supported", "inconclusive", "inconclusive")),
    ],
)
def test_stabilization_evidence_branches(arrays, expected):
    lines = STUDIES["stabilization"].evidence(_entry("stabilization", {}, arrays))
    assert tuple(e.verdict for e in lines) == expected


def _cont_data(order_fine=1.01, local=(1.1, 1.03, 1.01), intercept=0.5, se=0.01, bias=0.0):
    fit = {"slope": -0.3, "slope_se": 0.05, "intercept": intercept, "intercept_se": se}
    fit |= {"chi2_dof": 1.0, "n": 4}
    data = {
        "regularizer": {
            "order": 1.0,
            "order_fine": order_fine,
            "local_orders": list(local),
            "finest_error": 1e-3,
        },
        "gbm": {"lam": 1.0, "sigma": 1.0, "continuous": 0.5, "fit": fit},
        "extrapolation_bias": bias,
    }
    data["gbm"]["first_order_coefficient"] = -0.25
    data["gbm"]["extrapolation_bias"] = data.pop("extrapolation_bias")
    return data, {"gbm_exact": np.array([0.45, 0.47, 0.49])}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("supported", "supported")),
        ({"order_fine": 1.5, "local": (1.5, 1.5, 1.5)}, ("not supported", "supported")),
        ({"order_fine": 1.0, "local": (1.6, 1.3, 1.0)}, ("inconclusive", "supported")),
        ({"intercept": 0.6}, ("supported", "not supported")),
        # 0.05 off: beyond 3 SE, but within 3 SE + the straight line's predicted bias
        ({"intercept": 0.55, "bias": 0.03}, ("supported", "supported")),
        ({"intercept": 0.55, "bias": 0.01}, ("supported", "not supported")),
        ({"se": 0.1}, ("supported", "inconclusive")),
    ],
)
def test_continuum_evidence_branches(kwargs, expected):
    data, arrays = _cont_data(**kwargs)
    lines = STUDIES["continuum"].evidence(_entry("continuum", copy.deepcopy(data), arrays))
    assert tuple(e.verdict for e in lines) == expected


def test_evidence_reads_numbers_stored_as_strings(smoke_store):
    """The store writes nan as "nan": evidence must still compute (not crash)."""
    entry = ResultStore(smoke_store / "results").load("theory/regularizer_law")
    data = copy.deepcopy(entry.data)
    data["sde"]["fit"]["slope_se"] = "nan"
    lines = STUDIES["regularizer_law"].evidence(_entry("regularizer_law", data, entry.arrays))
    assert lines[1].verdict == "inconclusive"


def test_full_preset_device_follows_availability():
    assert study_device("quick") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert study_device("full").type == expected
