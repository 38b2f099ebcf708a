"""Hypothesis strategies for small models and noise levels (CONVENTIONS.md §7).

Tensors are generated from a drawn integer seed (hypothesis shrinks sizes and seeds;
tensor entries come from torch's generator), with bounded ranges rather than
``assume``.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from nrnn_theory import NoiseSpec

from _problems import random_params


__all__ = ["model_and_inputs", "noise_specs", "seeds"]

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def noise_specs(draw, conventions=("sde", "paper_code"), max_level: float = 1.0):
    """A NoiseSpec of either convention and structure with levels in [0, max_level]."""
    convention = draw(st.sampled_from(conventions))
    level = st.floats(min_value=0.0, max_value=max_level, allow_nan=False)
    if convention == "paper_code":
        return NoiseSpec.paper_code(add=draw(level), mult=draw(level))
    return NoiseSpec(
        epsilon=draw(st.floats(min_value=0.0, max_value=1.0, allow_nan=False)),
        sigma1=draw(level),
        sigma2=draw(level),
        structure=draw(st.sampled_from(["diagonal", "scalar"])),
    )


@st.composite
def model_and_inputs(
    draw, max_hidden: int = 6, max_input: int = 3, max_steps: int = 8, dtype=torch.float64
):
    """``(params, xs, generator)``: a random small NRNN and inputs (B, T, D)."""
    H = draw(st.integers(1, max_hidden))
    D = draw(st.integers(1, max_input))
    C = draw(st.integers(2, 4))
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, max_steps))
    alpha = draw(st.sampled_from([0.0, 1.0]))
    per_unit = draw(st.booleans())
    dt = draw(st.sampled_from([0.01, 0.1, 0.5]))
    g = torch.Generator().manual_seed(draw(seeds))
    params = random_params(
        H, D, C, generator=g, dtype=dtype, dt=dt, alpha=alpha, per_unit_step=per_unit
    )
    xs = torch.randn(B, T, D, generator=g, dtype=dtype)
    return params, xs, g
