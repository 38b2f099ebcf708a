"""Tests of nrnn_theory.reachability: reachable boxes and tanh slope sectors.

Oracles: simulated trajectories (>= 10^4 input sequences, box vertices included) must
lie in the boxes; a dense grid of tanh' values for the slope range; difference
quotients of simulated trajectory pairs for the sectors; a fine RK4 integration of the
ODE for the ODE-invariant box.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn_theory import (
    global_sector,
    reachable_sector,
    reachable_set,
    rollout,
    sector_from_preactivation_boxes,
    tanh_slope_range,
)

from _problems import random_params
from _strategies import seeds


F64 = torch.float64


def _contracting(H, D, g, scale=1.0, shift=1.0, dt=0.1):
    p = random_params(H, D, 3, generator=g, scale=scale, dt=dt)
    return p.replace(A=p.A - shift * torch.eye(H, dtype=F64))


def _inputs(g, n, T, D, lo=0.0, hi=1.0):
    """n random sequences in the box; the first ones sit on vertices (constant and random)."""
    xs = lo + (hi - lo) * torch.rand(n, T, D, generator=g, dtype=F64)
    verts = torch.tensor(list(itertools.product([lo, hi], repeat=D)), dtype=F64)
    nv = len(verts)
    xs[:nv] = verts[:, None, :]
    idx = torch.randint(0, nv, (1000, T), generator=g)
    xs[nv : nv + 1000] = verts[idx]
    return xs


def _states_and_pre(p, xs, h0=None):
    hs = rollout(p, xs, h0=h0, return_states=True)
    B = xs.shape[0]
    h_prev = torch.cat(
        [(torch.zeros(B, 1, p.hidden_size, dtype=F64) if h0 is None else h0[:, None]), hs[:, :-1]],
        dim=1,
    )
    z = h_prev @ p.W.mT + xs @ p.U.mT + p.b
    return hs, z


@pytest.mark.parametrize("method", ["zonotope", "symbolic", "interval"])
def test_boxes_contain_simulated_trajectories(generator, method):
    p = _contracting(4, 2, generator)
    T = 25
    reach = reachable_set(p, (0.0, 1.0), T, method=method, window=8)
    xs = _inputs(generator, 10_000, T, 2)
    hs, z = _states_and_pre(p, xs)
    assert bool((hs >= reach.state_lo[1:]).all() and (hs <= reach.state_hi[1:]).all())
    assert bool((z >= reach.pre_lo).all() and (z <= reach.pre_hi).all())
    assert reach.horizon == T and reach.state_lo.shape == (T + 1, 4)


def test_symbolic_boxes_inside_interval_boxes(generator):
    # |M^n| <= |M|^n entrywise: exact composition of the linear part never widens a box.
    p = _contracting(5, 2, generator)
    a = reachable_set(p, (0.0, 1.0), 30, method="symbolic", invariant=False)
    b = reachable_set(p, (0.0, 1.0), 30, method="interval", invariant=False)
    slack = 1e-9
    assert bool((a.pre_lo >= b.pre_lo - slack).all() and (a.pre_hi <= b.pre_hi + slack).all())
    assert bool((a.state_lo >= b.state_lo - slack).all())
    assert float((a.pre_hi - a.pre_lo).sum()) < float((b.pre_hi - b.pre_lo).sum())


def _feedback(H=4, a=0.05, w=3.0, u=0.05, seed=0):
    """A = a I (expanding alone), W = -w I + small: a strong negative feedback through tanh."""
    g = torch.Generator().manual_seed(seed)
    return random_params(H, 1, 3, generator=g, dt=0.1).replace(
        A=a * torch.eye(H, dtype=F64),
        W=-w * torch.eye(H, dtype=F64) + 0.01 * torch.randn(H, H, generator=g, dtype=F64),
        U=u * torch.ones(H, 1, dtype=F64),
        b=torch.zeros(H, dtype=F64),
    )


def test_zonotope_keeps_the_feedback_that_boxes_lose(generator):
    # h' = h + dt (a h + tanh(-w h + u x)): the true pre-activations stay within
    # ~ |u| of 0, while any box method treats h and tanh(-w h) as independent and grows
    # by about 1 + dt w per step. Oracle: simulated ranges (10^4 sequences, vertices).
    p = _feedback()
    T = 30
    zon = reachable_set(p, (0.0, 1.0), T, method="zonotope", window=T)
    sym = reachable_set(p, (0.0, 1.0), T, method="symbolic", window=T)
    xs = _inputs(generator, 10_000, T, 1)
    hs, z = _states_and_pre(p, xs)
    assert bool((z >= zon.pre_lo).all() and (z <= zon.pre_hi).all())
    assert bool((hs >= zon.state_lo[1:]).all() and (hs <= zon.state_hi[1:]).all())
    sim = (z.amax(0) - z.amin(0)).mean()
    width_zon = (zon.pre_hi - zon.pre_lo).mean()
    width_sym = (sym.pre_hi - sym.pre_lo).mean()
    assert float(width_zon) <= 1.2 * float(sim)  # close to the simulated range
    assert float(width_sym) >= 10 * float(width_zon)
    # Never wider than the symbolic boxes (intersected with them), and invariant.
    assert bool((zon.pre_lo >= sym.pre_lo).all() and (zon.pre_hi <= sym.pre_hi).all())
    assert zon.invariant_lo is not None and sym.invariant_lo is None
    later = _states_and_pre(p, _inputs(generator, 2000, 4 * T, 1))[0][:, zon.invariant_from :]
    assert bool((later >= zon.invariant_lo).all() and (later <= zon.invariant_hi).all())


@settings(max_examples=8)
@given(seeds, st.integers(1, 5), st.integers(1, 3), st.sampled_from([2, 8]))
def test_zonotope_contains_trajectories_with_generator_reduction(seed, H, D, window):
    # window * (H + D) generators at most: the oldest are boxed, still sound.
    g = torch.Generator().manual_seed(seed)
    p = random_params(H, D, 3, generator=g, scale=1.5, dt=0.1, per_unit_step=True)
    T = 20
    reach = reachable_set(p, (-1.0, 1.0), T, method="zonotope", window=window, invariant=False)
    xs = _inputs(g, 3000, T, D, -1.0, 1.0)
    hs, z = _states_and_pre(p, xs)
    assert bool((z >= reach.pre_lo).all() and (z <= reach.pre_hi).all())
    assert bool((hs >= reach.state_lo[1:]).all() and (hs <= reach.state_hi[1:]).all())


def test_tanh_parallel_bounds_match_dense_grid():
    # Oracle: a dense grid of tanh(z) - a z on each box lies within beta +- gamma, and
    # the bounds are tight (attained up to the grid spacing).
    from nrnn_theory import reachability

    lo = torch.tensor([-3.0, -0.5, 0.2, -4.0, 1.0], dtype=F64)
    hi = torch.tensor([2.0, 0.5, 3.0, -1.0, 1.0], dtype=F64)
    a, beta, gamma = reachability._tanh_parallel(lo, hi)
    for i in range(5):
        z = np.linspace(float(lo[i]), float(hi[i]), 20001)
        phi = np.tanh(z) - float(a[i]) * z
        assert phi.max() <= float(beta[i] + gamma[i]) and phi.min() >= float(beta[i] - gamma[i])
        assert float(beta[i] + gamma[i]) - phi.max() <= 1e-8
        assert phi.min() - float(beta[i] - gamma[i]) <= 1e-8


def test_invariant_box_contains_all_later_states(generator):
    p = _contracting(3, 1, generator, scale=0.5, shift=1.5)
    T = 20
    reach = reachable_set(p, (0.0, 1.0), T, window=10)
    assert reach.invariant_lo is not None and reach.invariant_from is not None
    xs = _inputs(generator, 10_000, 6 * T, 1)
    hs, z = _states_and_pre(p, xs)
    k = reach.invariant_from
    later = hs[:, max(k - 1, 0) :]
    assert bool((later >= reach.invariant_lo).all() and (later <= reach.invariant_hi).all())
    z_later = z[:, k:]
    assert bool((z_later >= reach.invariant_pre_lo).all())
    assert bool((z_later <= reach.invariant_pre_hi).all())
    # The tail sector holds for the slopes from step k on, and is inside the full one.
    tail = reachable_sector(reach, tail=True)
    full = reachable_sector(reach)
    d = 1 - torch.tanh(z_later) ** 2
    assert bool((d >= tail.lo - 1e-12).all() and (d <= tail.hi + 1e-12).all())
    assert bool((tail.lo >= full.lo).all() and (tail.hi <= full.hi).all())
    assert f"from step {k} on" in tail.input_set


def test_ode_invariant_box_holds_for_the_ode(generator):
    # Strongly dissipative model: the box passes Nagumo's test, and an RK4 solution of
    # the ODE with piecewise-constant inputs from the box stays inside it.
    p = _contracting(3, 1, generator, scale=0.3, shift=2.0)
    reach = reachable_set(p, (0.0, 1.0), 10, window=10)
    assert reach.ode_invariant
    lo, hi = reach.ode_lo, reach.ode_hi
    xs = _inputs(generator, 2000, 40, 1)
    h = torch.zeros(2000, 3, dtype=F64)

    def f(h, x):
        return h @ p.A.mT + torch.tanh(h @ p.W.mT + x @ p.U.mT + p.b)

    dt = 0.01
    for k in range(40):
        x = xs[:, k]
        for _ in range(10):  # 10 RK4 substeps per input step of length 0.1
            k1 = f(h, x)
            k2 = f(h + 0.5 * dt * k1, x)
            k3 = f(h + 0.5 * dt * k2, x)
            k4 = f(h + dt * k3, x)
            h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            assert bool((h >= lo - 1e-9).all() and (h <= hi + 1e-9).all())


@settings(max_examples=30)
@given(st.floats(-6, 6), st.floats(0, 6))
def test_tanh_slope_range_matches_dense_grid(lo, width):
    hi = lo + width
    s_lo, s_hi = tanh_slope_range(torch.tensor([lo], dtype=F64), torch.tensor([hi], dtype=F64))
    grid = np.linspace(lo, hi, 20001)
    vals = 1.0 / np.cosh(grid) ** 2  # sech^2, no cancellation for large |z|
    assert float(s_lo) <= vals.min() * (1 + 1e-12) + 1e-300
    assert float(s_hi) >= vals.max() * (1 - 1e-12)
    # Tight: the extremes are attained at grid points (endpoints and 0 are on or next to it).
    assert float(s_lo) == pytest.approx(vals.min(), rel=1e-9, abs=1e-300)
    assert float(s_hi) == pytest.approx(vals.max(), rel=1e-6)


@settings(max_examples=10)
@given(seeds)
def test_reachable_sector_contains_pair_slopes(seed):
    g = torch.Generator().manual_seed(seed)
    p = _contracting(3, 2, g)
    T = 15
    reach = reachable_set(p, (-0.5, 0.5), T, window=T)
    sec = reachable_sector(reach)
    per = reachable_sector(reach, per_step=True)
    xs = _inputs(g, 4000, T, 2, -0.5, 0.5)
    _, z = _states_and_pre(p, xs)
    z2 = z.roll(1, dims=0)  # pairs of trajectories with different inputs: same boxes
    num = torch.tanh(z) - torch.tanh(z2)
    den = z - z2
    ok = den.abs() > 1e-6
    q = num[ok] / den[ok]
    lo_k = per.lo.expand_as(z)[ok]
    hi_k = per.hi.expand_as(z)[ok]
    assert bool((q >= lo_k - 1e-12).all() and (q <= hi_k + 1e-12).all())
    if sec.horizon is None:  # holds at every step
        assert bool((per.lo >= sec.lo - 1e-15).all())
    assert bool((sec.lo >= 0).all() and (sec.hi <= 1).all())


def test_global_and_plugged_sectors():
    g = global_sector(4)
    assert g.is_global and g.valid_for == "all" and not g.per_step
    s = sector_from_preactivation_boxes(-torch.ones(5, 2), torch.ones(5, 2))
    assert s.per_step and s.horizon == 5 and s.valid_for == "map"
    assert float(s.hi.max()) == 1.0 and float(s.lo.min()) == pytest.approx(
        1 - np.tanh(1.0) ** 2, rel=1e-11
    )


def test_bad_inputs(generator):
    p = _contracting(3, 2, generator)
    with pytest.raises(TypeError, match="input_box: expected a pair"):
        reachable_set(p, 1.0, 5)
    with pytest.raises(ValueError, match="input_box: expected lo <= hi"):
        reachable_set(p, (1.0, 0.0), 5)
    with pytest.raises(ValueError, match="input_box: expected bounds of shape"):
        reachable_set(p, (torch.zeros(3), torch.ones(3)), 5)
    with pytest.raises(ValueError, match="method: expected one of"):
        reachable_set(p, (0.0, 1.0), 5, method="polytope")
    with pytest.raises(ValueError, match="horizon: expected an integer >= 1"):
        reachable_set(p, (0.0, 1.0), 0)
    with pytest.raises(ValueError, match="z_lo: expected z_lo <= z_hi"):
        tanh_slope_range(torch.ones(2), torch.zeros(2))
    reach = reachable_set(p, (0.0, 1.0), 5, invariant=False)
    with pytest.raises(ValueError, match="ODE needs a forward-invariant box"):
        reachable_sector(reach, dynamics="ode")
    with pytest.raises(ValueError, match="tail=True needs an invariant box"):
        reachable_sector(reach, tail=True)
