"""Hypothesis strategies for small NRNNs, noises and input sequences.

Tensors are generated from a drawn integer seed (hypothesis shrinks sizes and seeds;
tensor entries come from torch's generator), with bounded ranges rather than
``assume``. This module needs hypothesis (``pip install nrnn_theory[testing]``).

Examples
--------
>>> from hypothesis import given, settings
>>> @settings(max_examples=5, deadline=None)
... @given(nrnn_params(family="stable"))
... def test_stable_family_is_certified(case):
...     params, lambda_star = case
...     assert lambda_star < 0
>>> test_stable_family_is_certified()
"""

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "nrnn_theory.testing.strategies needs hypothesis: pip install 'nrnn_theory[testing]'"
    ) from exc
import torch

from nrnn_theory._types import NoiseSpec
from nrnn_theory.testing.problems import STABILITY_FAMILIES, random_params, stability_family_params


__all__ = [
    "input_sequences",
    "model_and_inputs",
    "noise_specs",
    "nrnn_params",
    "seeds",
]

#: Seeds of torch generators (hypothesis shrinks them towards 0).
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def noise_specs(draw, conventions=("sde", "paper_code"), max_level: float = 1.0):
    """A NoiseSpec of either convention and structure with levels in [0, max_level].

    Parameters
    ----------
    conventions : sequence of {"sde", "paper_code"}
        The conventions drawn from.
    max_level : float
        Largest noise level (``sigma1``, ``sigma2``; ``add``, ``mult`` for paper_code).

    Returns
    -------
    SearchStrategy of NoiseSpec
    """
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
def nrnn_params(
    draw,
    family: str | None = None,
    max_hidden: int = 6,
    max_input: int = 3,
    dtype: torch.dtype = torch.float64,
):
    """``(params, lambda_star)``: a small NRNN of a stability family and its known
    one-sided constant (:func:`~nrnn_theory.testing.stability_family_params`).

    Parameters
    ----------
    family : {"stable", "near_critical", "unstable"}, optional
        The family (default: any of them).
    max_hidden, max_input : int
        Largest hidden size ``H`` and input size ``D``.
    dtype : torch.dtype
        Dtype of the parameters.

    Returns
    -------
    SearchStrategy of (NRNNParams, float)
    """
    family = draw(st.sampled_from(STABILITY_FAMILIES)) if family is None else family
    H = draw(st.integers(1, max_hidden))
    D = draw(st.integers(1, max_input))
    C = draw(st.integers(2, 4))
    dt = draw(st.sampled_from([0.01, 0.1, 0.5]))
    g = torch.Generator().manual_seed(draw(seeds))
    return stability_family_params(family, H, D, C, generator=g, dtype=dtype, dt=dt)


@st.composite
def input_sequences(
    draw,
    input_size: int,
    max_batch: int = 4,
    max_steps: int = 8,
    dtype: torch.dtype = torch.float64,
    scale: float = 1.0,
):
    """Input sequences ``xs`` of shape (B, T, D), standard normal times ``scale``.

    Parameters
    ----------
    input_size : int
        ``D``.
    max_batch, max_steps : int
        Largest ``B`` and ``T``.
    dtype : torch.dtype
        Dtype of the inputs.
    scale : float
        Standard deviation of the entries.

    Returns
    -------
    SearchStrategy of Tensor, shape (B, T, D)
    """
    B = draw(st.integers(1, max_batch))
    T = draw(st.integers(1, max_steps))
    g = torch.Generator().manual_seed(draw(seeds))
    return scale * torch.randn(B, T, input_size, generator=g, dtype=dtype)


@st.composite
def model_and_inputs(
    draw, max_hidden: int = 6, max_input: int = 3, max_steps: int = 8, dtype=torch.float64
):
    """``(params, xs, generator)``: a random small NRNN and inputs (B, T, D).

    Parameters
    ----------
    max_hidden, max_input, max_steps : int
        Largest hidden size ``H``, input size ``D`` and number of steps ``T``.
    dtype : torch.dtype
        Dtype of parameters and inputs.

    Returns
    -------
    SearchStrategy of (NRNNParams, Tensor, torch.Generator)
        Weights of either ``alpha``, a scalar or per-unit step; the generator continues
        the stream that made them (for noise draws).
    """
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
