r"""Hessian flatness of a loss in its parameters: products, traces, eigenvalues, density.

docs/theory/flatness.md (R4). Everything here is functional: a loss is a callable
``loss_fn(params) -> scalar tensor`` on a mapping of named tensors, and every
derivative is taken with :mod:`torch.func`; no ``nn.Module`` is mutated, no ``.grad``
is read or written and ``.backward()`` is never called. The builders that turn models
into such callables, :func:`~nrnn_theory.objectives.nrnn_loss` (an
:class:`~nrnn_theory.NRNNParams`) and :func:`~nrnn_theory.objectives.module_loss` (any
``nn.Module``), live in :mod:`nrnn_theory.objectives` and are re-exported here. Noise
is off, or a frozen path that is never resampled between probes.

Flattening
----------
Vectors in parameter space are flat tensors of length ``n`` (the total number of
entries), laid out as the mapping's values in their iteration order, each
flattened in row-major order: :func:`params_to_vector` and :func:`vector_to_params`
convert. Results that hold vectors (eigenvectors, diagonals) use this layout.

Methods
-------
* :func:`hvp`: Hessian-vector products, forward-over-reverse or reverse-over-reverse.
* :func:`hessian`, :func:`hessian_trace`: dense Hessian and exact trace (small ``n``).
* :func:`estimate_hessian_trace`: Hutchinson with batches of Rademacher probes,
  standard error, optional tolerance stop, per-block traces. For :func:`nrnn_loss`
  losses :math:`z^\top Hz` comes from a second-order forward pass (no graph stored);
  otherwise from Hessian-vector products batched by ``vmap``.
* :func:`hessian_eigenvalues`: top-k (or bottom-k) eigenvalues by Lanczos with full
  reorthogonalization or by shifted power iteration, with residuals.
* :func:`estimate_spectral_density`: stochastic Lanczos quadrature.
* :func:`hidden_state_hessian`: :math:`\nabla^2_h\ell(h_M)` of the readout loss, the
  matrix :math:`H_\ell` of the regularizer :math:`\hat R` (docs/theory/regularizer.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from nrnn_theory._contract import (
    check_choice,
    check_finite,
    check_generator,
    check_linalg_dtype,
    check_noise,
    check_params,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
)
from nrnn_theory._krylov import (
    lanczos_extreme,
    lanczos_tridiagonal,
    ritz,
    subspace_iteration,
)
from nrnn_theory._record import Result
from nrnn_theory._types import NoiseSpec, NRNNParams
from nrnn_theory.dynamics import rollout
from nrnn_theory.losses import cross_entropy_derivatives
from nrnn_theory.objectives import LossFn, module_loss, nrnn_loss, select_names


__all__ = [
    "EIGEN_METHODS",
    "HVP_METHODS",
    "HessianEigenvalues",
    "HessianTrace",
    "HiddenStateHessian",
    "SpectralDensity",
    "TraceEstimate",
    "estimate_hessian_trace",
    "estimate_spectral_density",
    "hessian",
    "hessian_eigenvalues",
    "hessian_trace",
    "hidden_state_hessian",
    "hvp",
    "module_loss",
    "nrnn_loss",
    "params_to_vector",
    "vector_to_params",
]


# ---------------------------------------------------------------------- records
@dataclass(frozen=True)
class TraceEstimate(Result):
    r"""A Hutchinson estimate of a Hessian trace (:func:`~nrnn_theory.estimate_hessian_trace`).

    Attributes
    ----------
    mean : float
        :math:`\frac1N\sum_j z_j^\top H z_j`.
    stderr : float
        Sample standard deviation over :math:`\sqrt N` (``nan`` when ``N = 1``).
    n_probes : int
        Probes used, ``N``.
    samples : Tensor, shape (N,)
        The individual :math:`z_j^\top H z_j`.
    block_means, block_stderrs : dict[str, float]
        Per-block estimates :math:`z_B^\top(Hz)_B` and their standard errors; the
        block samples sum to ``samples``.
    converged : bool or None
        Whether the ``rtol``/``atol`` stopping rule was met; ``None`` when none was set.
    n_params : int
        Dimension ``n`` of the parameter space.
    """

    mean: float
    stderr: float
    n_probes: int
    samples: Tensor
    block_means: dict[str, float]
    block_stderrs: dict[str, float]
    converged: bool | None
    n_params: int


@dataclass(frozen=True)
class HessianTrace(Result):
    """The exact Hessian trace (:func:`~nrnn_theory.hessian_trace`).

    Attributes
    ----------
    trace : float
    blocks : dict[str, float]
        Trace of each diagonal block; they sum to ``trace``.
    diagonal : Tensor, shape (n,)
        The Hessian's diagonal in the flat layout of
        :func:`~nrnn_theory.params_to_vector`.
    n_params : int
    n_hvps : int
        Hessian-vector products used (``n``).
    """

    trace: float
    blocks: dict[str, float]
    diagonal: Tensor
    n_params: int
    n_hvps: int


@dataclass(frozen=True)
class HessianEigenvalues(Result):
    r"""Extreme Hessian eigenvalues (:func:`~nrnn_theory.hessian_eigenvalues`).

    Attributes
    ----------
    eigenvalues : Tensor, shape (k,)
        Descending for ``which="largest"`` or ``"magnitude"``, ascending for ``"smallest"``.
    residuals : Tensor, shape (k,)
        :math:`\|H y_i - \lambda_i y_i\|` for the unit Ritz vectors :math:`y_i`, computed
        with ``k`` extra products. By Weyl's bound each :math:`\lambda_i` lies within its
        residual of an exact eigenvalue.
    eigenvectors : Tensor, shape (k, n), or None
        Unit vectors in the flat layout, if requested.
    which : str
    method : str
        ``"lanczos"`` or ``"power"``.
    converged : bool
        Whether the tolerance was met within ``max_iter``.
    n_hvps : int
        Hessian-vector products used.
    n_params : int
    """

    eigenvalues: Tensor
    residuals: Tensor
    eigenvectors: Tensor | None
    which: str
    method: str
    converged: bool
    n_hvps: int
    n_params: int


@dataclass(frozen=True)
class SpectralDensity(Result):
    r"""A Hessian eigenvalue density by stochastic Lanczos quadrature.

    Returned by :func:`~nrnn_theory.estimate_spectral_density`.

    Attributes
    ----------
    nodes, weights : Tensor, shape (n_probes, n_steps)
        Gauss quadrature nodes (Ritz values) and weights (squared first components) per
        probe; each row of ``weights`` sums to 1.
    grid, density : Tensor, shape (n_grid,)
        The Gaussian-smoothed density :math:`\phi(t)`, which integrates to 1.
    bandwidth : float
        Kernel standard deviation :math:`\sigma`.
    moments, moment_stderrs : Tensor, shape (max_moment + 1,)
        Estimates of :math:`\mathrm{tr}(H^q)/n`, :math:`q = 0, 1, \dots`, and their standard
        errors over probes (``nan`` for one probe).
    n_probes, n_steps, n_params : int
    """

    nodes: Tensor
    weights: Tensor
    grid: Tensor
    density: Tensor
    bandwidth: float
    moments: Tensor
    moment_stderrs: Tensor
    n_probes: int
    n_steps: int
    n_params: int


@dataclass(frozen=True)
class HiddenStateHessian(Result):
    r"""The loss curvature in the final hidden state (:func:`~nrnn_theory.hidden_state_hessian`).

    Attributes
    ----------
    state : Tensor, shape (B, H)
        :math:`h_M`.
    loss : Tensor, shape (B,)
    grad : Tensor, shape (B, H)
        :math:`g = V^\top(p - e_y)`.
    hessian : Tensor, shape (B, H, H)
        :math:`H_\ell = V^\top\Pi_pV`.
    trace : Tensor, shape (B,)
    eigenvalues : Tensor, shape (B, H)
        Ascending; non-negative up to rounding, at most ``C - 1`` non-zero.
    """

    state: Tensor
    loss: Tensor
    grad: Tensor
    hessian: Tensor
    trace: Tensor
    eigenvalues: Tensor


HVPMethod = Literal["forward_over_reverse", "reverse_over_reverse"]
TraceMethod = Literal["auto", "quadratic_form", "forward_over_reverse", "reverse_over_reverse"]
EigenMethod = Literal["lanczos", "power"]
Which = Literal["largest", "smallest", "magnitude"]


# --------------------------------------------------------------------------- layout
class _Layout:
    """Names, shapes and offsets of a parameter mapping flattened to a vector."""

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        self.names = tuple(params)
        self.shapes = tuple(tuple(params[k].shape) for k in self.names)
        self.sizes = tuple(math.prod(s) for s in self.shapes)
        self.n = sum(self.sizes)
        offsets = [0]
        for s in self.sizes:
            offsets.append(offsets[-1] + s)
        self.offsets = tuple(offsets)
        first = params[self.names[0]]
        self.dtype = first.dtype
        self.device = first.device

    def slices(self) -> dict[str, slice]:
        return {k: slice(self.offsets[i], self.offsets[i + 1]) for i, k in enumerate(self.names)}

    def unflatten(self, v: Tensor) -> dict[str, Tensor]:
        """(..., n) -> mapping of (..., *shape)."""
        lead = v.shape[:-1]
        return {
            k: v[..., self.offsets[i] : self.offsets[i + 1]].reshape((*lead, *self.shapes[i]))
            for i, k in enumerate(self.names)
        }

    def flatten(self, d: Mapping[str, Tensor], lead: int = 0) -> Tensor:
        """Mapping of (*lead, *shape) -> (*lead, n)."""
        parts = [d[k].reshape((*d[k].shape[:lead], -1)) for k in self.names]
        return torch.cat(parts, dim=-1)


def params_to_vector(params: Mapping[str, Tensor]) -> Tensor:
    """Concatenate a parameter mapping into one flat vector (module docstring layout).

    Parameters
    ----------
    params : Mapping[str, Tensor]

    Returns
    -------
    Tensor, shape (n,)

    Examples
    --------
    >>> params_to_vector({"a": torch.ones(2, 2), "b": torch.zeros(1)}).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    params = _check_params_mapping(params)
    return _Layout(params).flatten(params)


def vector_to_params(vector: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector (n,) into a mapping shaped like ``like`` (views, no copy).

    Parameters
    ----------
    vector : Tensor, shape (n,)
        With ``n`` the total number of entries of ``like``.
    like : mapping of str to Tensor
        Names and shapes, in the order of :func:`params_to_vector`.

    Returns
    -------
    dict of str to Tensor
        Views into ``vector``.

    Examples
    --------
    >>> v = vector_to_params(torch.arange(5.0), {"a": torch.ones(2, 2), "b": torch.zeros(1)})
    >>> v["a"].tolist(), v["b"].tolist()
    ([[0.0, 1.0], [2.0, 3.0]], [4.0])
    """
    like = _check_params_mapping(like, name="like")
    layout = _Layout(like)
    vector = check_tensor("vector", vector)
    if vector.shape != (layout.n,):
        raise ValueError(
            f"vector: expected shape ({layout.n},) (the number of parameter entries), "
            f"got {tuple(vector.shape)}"
        )
    return layout.unflatten(vector)


# --------------------------------------------------------------------------- validation
def _check_params_mapping(params: object, name: str = "params") -> dict[str, Tensor]:
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{name}: expected a mapping of names to tensors, got {type(params).__name__}"
        )
    if len(params) == 0:
        raise ValueError(f"{name}: expected at least one parameter tensor, got an empty mapping")
    out: dict[str, Tensor] = {}
    ref_name = None
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: expected string keys, got {type(key).__name__} {key!r}")
        t = check_tensor(f"{name}[{key!r}]", value)
        if ref_name is None:
            ref_name, ref = key, t
        elif t.dtype != ref.dtype or t.device != ref.device:
            raise TypeError(
                f"{name}[{key!r}]: expected dtype {ref.dtype} on {ref.device} (as "
                f"{name}[{ref_name!r}]), got {t.dtype} on {t.device}"
            )
        check_finite(f"{name}[{key!r}]", t)
        out[key] = t.detach()
    return out


def _check_loss(loss_fn: object, params: dict[str, Tensor]) -> float:
    """Evaluate the loss once; require a finite real scalar tensor. Returns its value."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable params -> scalar, got {type(loss_fn)}")
    with torch.no_grad():
        value = loss_fn(dict(params))
    if not isinstance(value, Tensor):
        raise TypeError(
            f"loss_fn: expected it to return a scalar torch.Tensor, got {type(value).__name__}"
        )
    if value.ndim != 0:
        raise ValueError(
            "loss_fn: expected a scalar (0-dim) tensor, got shape "
            f"{tuple(value.shape)}; reduce it (e.g. .mean()) inside loss_fn"
        )
    if not value.is_floating_point():
        raise TypeError(f"loss_fn: expected a floating-point scalar, got dtype {value.dtype}")
    if not bool(torch.isfinite(value)):
        raise ValueError(f"loss_fn: expected a finite value at params, got {float(value)}")
    return float(value)


def _prepare(loss_fn: object, params: object) -> tuple[dict[str, Tensor], _Layout, float]:
    p = _check_params_mapping(params)
    value = _check_loss(loss_fn, p)
    return p, _Layout(p), value


def _check_blocks(
    blocks: Mapping[str, Sequence[str]] | None, layout: _Layout
) -> dict[str, tuple[str, ...]]:
    """Partition the parameter names into named blocks; unnamed ones become singletons."""
    if blocks is None:
        return {k: (k,) for k in layout.names}
    if not isinstance(blocks, Mapping):
        raise TypeError(
            f"blocks: expected a mapping block name -> parameter names, got {type(blocks).__name__}"
        )
    seen: dict[str, str] = {}
    out: dict[str, tuple[str, ...]] = {}
    for block, members in blocks.items():
        members = select_names(members, layout.names, argument=f"blocks[{block!r}]")
        for m in members:
            if m in seen:
                raise ValueError(
                    f"blocks[{block!r}]: parameter {m!r} is already in block {seen[m]!r}; "
                    "blocks must not overlap"
                )
            seen[m] = block
        out[str(block)] = members
    for k in layout.names:
        if k not in seen:
            if k in out:
                raise ValueError(
                    f"blocks: block name {k!r} clashes with the unassigned parameter {k!r}"
                )
            out[k] = (k,)
    return out


def _block_masks(blocks: dict[str, tuple[str, ...]], layout: _Layout) -> Tensor:
    """(n_blocks, n) 0/1 masks selecting each block's entries."""
    sl = layout.slices()
    masks = torch.zeros(len(blocks), layout.n, dtype=layout.dtype, device=layout.device)
    for i, members in enumerate(blocks.values()):
        for m in members:
            masks[i, sl[m]] = 1.0
    return masks


# --------------------------------------------------------------------------- HVPs
def _load_jvp_decompositions() -> None:
    """Import torch's forward-mode decompositions once, silencing their deprecation noise.

    The first forward-mode call in a process imports
    ``torch._decomp.decompositions_for_jvp``, which calls the deprecated
    ``torch.jit.script`` and so raises under ``-W error`` (torch 2.13). Importing it here
    first, with that one warning ignored, keeps :func:`hvp` usable under strict warnings.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.*deprecated", category=DeprecationWarning
        )
        try:
            from torch._decomp import decompositions_for_jvp  # noqa: F401
        except ImportError:  # pragma: no cover - a future torch without the module
            pass


def _operator_forward_over_reverse(loss_fn, params, layout, chunk_size):
    _load_jvp_decompositions()
    g = grad(loss_fn)

    def one(v: Tensor) -> Tensor:
        return layout.flatten(jvp(g, (params,), (layout.unflatten(v),))[1])

    batched = vmap(one, chunk_size=chunk_size)
    return lambda V: batched(V).detach()


def _operator_reverse_over_reverse(loss_fn, params, layout, chunk_size):
    # The gradient and its graph are built once; every product is one vmapped
    # backward pass through that graph (the batched form of double backward).
    _, vjp_fn = vjp(grad(loss_fn), params)

    def one(v: Tensor) -> Tensor:
        return layout.flatten(vjp_fn(layout.unflatten(v))[0])

    batched = vmap(one, chunk_size=chunk_size)
    return lambda V: batched(V).detach()


#: Hessian-vector product implementations: name -> builder of a batched operator
#: ``(P, n) -> (P, n)``.
HVP_METHODS: dict[str, Callable] = {
    "forward_over_reverse": _operator_forward_over_reverse,
    "reverse_over_reverse": _operator_reverse_over_reverse,
}


def _operator(loss_fn, params, layout, method, batch_size):
    check_choice("method", method, HVP_METHODS)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    return HVP_METHODS[method](loss_fn, params, layout, batch_size)


def hvp(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    vector: Mapping[str, Tensor] | Tensor,
    *,
    method: HVPMethod = "forward_over_reverse",
    batch_size: int | None = None,
) -> dict[str, Tensor] | Tensor:
    r"""Hessian-vector product :math:`\nabla^2_\theta L(\theta)\,v` (docs/theory/flatness.md).

    .. math:: \nabla^2 L(\theta)\,v = \frac{d}{dt}\nabla L(\theta + t v)\Big|_{t=0}

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params) -> Tensor`` (0-dim), differentiable by :mod:`torch.func`.
    params : Mapping[str, Tensor]
        The point :math:`\theta`; not modified.
    vector : Mapping[str, Tensor] or Tensor, shape (n,) or (P, n)
        A direction with the keys and shapes of ``params``, a flat vector, or a batch
        of ``P`` flat vectors (products computed together by ``vmap``).
    method : {"forward_over_reverse", "reverse_over_reverse"}
        ``"forward_over_reverse"`` pushes a tangent through the gradient computation
        (``jvp`` of ``grad``): no graph is kept between products. ``"reverse_over_reverse"``
        builds the gradient's graph once and backpropagates through it for each
        vector (``vjp`` of ``grad``): usually faster for many vectors at the cost of
        keeping that graph in memory. They agree to rounding; one cross-checks the other.
    batch_size : int, optional
        Vectors per ``vmap`` call (``chunk_size``); bounds memory. Default: all at once.

    Returns
    -------
    dict[str, Tensor] or Tensor
        The same structure as ``vector``.

    Raises
    ------
    ValueError, TypeError
        On a non-scalar or non-finite loss, non-finite parameters, or a vector whose
        keys or shapes do not match ``params``.

    Examples
    --------
    >>> Hm = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    >>> loss = lambda p: 0.5 * p["x"] @ Hm @ p["x"]
    >>> hvp(loss, {"x": torch.zeros(2)}, {"x": torch.tensor([1.0, 0.0])})
    {'x': tensor([2., 1.])}
    """
    p, layout, _ = _prepare(loss_fn, params)
    if isinstance(vector, Mapping):
        if set(vector) != set(layout.names):
            raise ValueError(
                f"vector: expected keys {sorted(layout.names)} (those of params), got "
                f"{sorted(map(str, vector))}"
            )
        for k, shape in zip(layout.names, layout.shapes, strict=True):
            t = check_tensor(f"vector[{k!r}]", vector[k])
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"vector[{k!r}]: expected shape {shape} to match params[{k!r}], "
                    f"got {tuple(t.shape)}"
                )
        flat = _match(layout.flatten(vector), layout, "vector")[None]
        out = _operator(loss_fn, p, layout, method, batch_size)(flat)[0]
        return layout.unflatten(out)
    v = check_tensor("vector", vector)
    if v.ndim not in (1, 2) or v.shape[-1] != layout.n:
        raise ValueError(
            f"vector: expected shape ({layout.n},) or (P, {layout.n}) (n = number of "
            f"parameter entries), got {tuple(v.shape)}"
        )
    v = _match(v, layout, "vector")
    out = _operator(loss_fn, p, layout, method, batch_size)(v.reshape(-1, layout.n))
    return out.reshape(v.shape)


def _match(v: Tensor, layout: _Layout, name: str) -> Tensor:
    if v.dtype != layout.dtype or v.device != layout.device:
        raise TypeError(
            f"{name}: expected dtype {layout.dtype} on {layout.device} (those of params), "
            f"got {v.dtype} on {v.device}"
        )
    check_finite(name, v)
    return v


# --------------------------------------------------------------------------- exact
def _check_size(layout: _Layout, max_params: int, what: str) -> None:
    check_positive_int("max_params", max_params)
    if layout.n > max_params:
        raise ValueError(
            f"params: {what} needs n = {layout.n} Hessian-vector products, more than "
            f"max_params = {max_params}; raise max_params, or use estimate_hessian_trace / "
            "hessian_eigenvalues, which need far fewer"
        )


def _basis_products(op, layout: _Layout, batch_size: int) -> Tensor:
    """All columns of the Hessian, (n, n), computed ``batch_size`` at a time."""
    eye = torch.eye(layout.n, dtype=layout.dtype, device=layout.device)
    return torch.cat([op(rows) for rows in eye.split(batch_size)], dim=0)


def hessian(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    *,
    method: HVPMethod = "reverse_over_reverse",
    batch_size: int = 256,
    max_params: int = 20_000,
) -> Tensor:
    r"""The dense Hessian :math:`\nabla^2_\theta L`, shape (n, n), for small ``n``.

    Computed column by column as Hessian-vector products with the unit vectors (``n``
    products, ``batch_size`` per ``vmap`` call), in the flat layout of
    :func:`params_to_vector`. Symmetric up to rounding; not symmetrized.

    Parameters
    ----------
    loss_fn, params, method
        As :func:`hvp`.
    batch_size : int
        Unit vectors per ``vmap`` call.
    max_params : int
        Refuse ``n`` above this (the cost is ``n`` products and ``n^2`` memory).

    Returns
    -------
    Tensor, shape (n, n)

    Examples
    --------
    >>> loss = lambda p: (p["x"] ** 3).sum() + p["x"][0] * p["y"]
    >>> hessian(loss, {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor(0.5)})
    tensor([[ 6.,  0.,  1.],
            [ 0., 12.,  0.],
            [ 1.,  0.,  0.]])
    """
    p, layout, _ = _prepare(loss_fn, params)
    _check_size(layout, max_params, "the dense Hessian")
    check_positive_int("batch_size", batch_size)
    op = _operator(loss_fn, p, layout, method, None)
    return _basis_products(op, layout, batch_size)


def hessian_trace(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    *,
    blocks: Mapping[str, Sequence[str]] | None = None,
    method: HVPMethod = "reverse_over_reverse",
    batch_size: int = 256,
    max_params: int = 20_000,
) -> HessianTrace:
    r"""Exact Hessian trace and per-block traces, for small parameter counts.

    .. math:: \mathrm{tr}\,\nabla^2 L = \sum_{i=1}^n e_i^\top\nabla^2 L\,e_i,\qquad
              \mathrm{tr}_B = \sum_{i\in B} (\nabla^2 L)_{ii}

    Uses ``n`` Hessian-vector products but keeps only the diagonal, so memory is
    ``O(batch_size * n)``.

    Parameters
    ----------
    loss_fn, params, method
        As :func:`hvp`.
    blocks : Mapping[str, Sequence[str]], optional
        Named groups of parameter names, e.g. ``{"recurrent": ["A", "W"], "readout":
        ["V", "c"]}``. Groups may not overlap; parameters left out get their own
        block, so the block traces always sum to the total. Default: one block per
        parameter.
    batch_size, max_params
        As :func:`hessian`.

    Returns
    -------
    HessianTrace
        ``trace``, ``blocks`` (block name -> trace) and ``diagonal`` (n,).

    Examples
    --------
    >>> loss = lambda p: (p["x"] ** 3).sum() + p["x"][0] * p["y"]
    >>> r = hessian_trace(loss, {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor(0.5)})
    >>> r.trace, r.blocks
    (18.0, {'x': 18.0, 'y': 0.0})
    """
    p, layout, _ = _prepare(loss_fn, params)
    _check_size(layout, max_params, "the exact trace")
    check_positive_int("batch_size", batch_size)
    parts = _check_blocks(blocks, layout)
    op = _operator(loss_fn, p, layout, method, None)
    eye = torch.eye(layout.n, dtype=layout.dtype, device=layout.device)
    diag = torch.cat([(op(rows) * rows).sum(dim=1) for rows in eye.split(batch_size)])
    masks = _block_masks(parts, layout)
    block_values = (masks @ diag).tolist()
    return HessianTrace(
        trace=float(diag.sum()),
        blocks=dict(zip(parts, block_values, strict=True)),
        diagonal=diag,
        n_params=layout.n,
        n_hvps=layout.n,
    )


# --------------------------------------------------------------------------- Hutchinson
def _rademacher(P: int, layout: _Layout, generator: torch.Generator | None) -> Tensor:
    check_generator(generator)
    gdev = generator.device if generator is not None else layout.device
    z = torch.randint(0, 2, (P, layout.n), device=gdev, generator=generator)
    return (2 * z - 1).to(dtype=layout.dtype, device=layout.device)


def _mean_stderr(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard error (sample std / sqrt(N)) along dim 0; stderr nan if N = 1."""
    N = x.shape[0]
    mean = x.mean(dim=0)
    if N < 2:
        return mean, torch.full_like(mean, math.nan)
    return mean, x.std(dim=0, correction=1) / math.sqrt(N)


def estimate_hessian_trace(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    *,
    n_probes: int = 100,
    rtol: float | None = None,
    atol: float | None = None,
    min_probes: int = 10,
    batch_size: int = 10,
    blocks: Mapping[str, Sequence[str]] | None = None,
    method: TraceMethod = "auto",
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    r"""Hutchinson estimate of the Hessian trace, with standard error (docs/theory/flatness.md).

    .. math:: \mathrm{tr}\,H \approx \frac1N\sum_{j=1}^N z_j^\top H z_j,\qquad
              z_j \in \{-1, 1\}^n\ \text{i.i.d. Rademacher},\qquad
              \mathrm{Var}(z^\top Hz) = 2\big(\|H\|_F^2 - \textstyle\sum_i H_{ii}^2\big).

    Probes are processed ``batch_size`` at a time. The standard error is the sample
    standard deviation over :math:`\sqrt N`. With ``blocks``, the same probes give
    unbiased per-block traces :math:`z_B^\top (Hz)_B`, which sum to the total sample by
    sample.

    Parameters
    ----------
    loss_fn, params
        As :func:`hvp`.
    method : {"auto", "quadratic_form", "reverse_over_reverse", "forward_over_reverse"}
        How :math:`z^\top Hz` is computed. ``"quadratic_form"`` uses the loss's own
        ``loss_fn.quadratic_form(params, directions) -> (P,)`` (the callables of
        :func:`nrnn_loss` have one: a second-order forward pass, hand-batched over
        probes, cheaper than a Hessian-vector product and storing no graph). The HVP
        methods batch Hessian-vector products with ``vmap`` (see :func:`hvp`); they
        are needed for ``blocks``. ``"auto"`` takes ``"quadratic_form"`` when the loss
        has one and no blocks are asked for, else ``"reverse_over_reverse"``.
    n_probes : int
        Number of probes, or the maximum when a tolerance is set.
    rtol, atol : float, optional
        Stop early, after a whole batch and at least ``min_probes`` probes, once
        ``stderr <= atol + rtol * |mean|`` (missing ones count as 0). Choose ``rtol``
        for a relative precision of the trace (e.g. 0.05); use ``atol`` when the trace
        may be near 0. Default: no early stop, exactly ``n_probes`` probes.
    min_probes : int
        Probes before the stopping rule is consulted (the sample standard deviation is
        itself noisy for few probes).
    batch_size : int
        Probes per ``vmap`` call. Larger batches amortize per-operation overhead but
        memory grows linearly (for an RNN loss, ``batch_size`` copies of the activations).
    blocks : Mapping[str, Sequence[str]], optional
        Named groups of parameters, as in :func:`hessian_trace` (parameters left out
        get their own block). Default: no per-block breakdown.
    generator : torch.Generator, optional
        Source of the probes, drawn ``batch_size`` at a time as
        ``torch.randint(0, 2, (P, n), generator=generator)`` mapped to :math:`\pm1`;
        ``None`` means fresh randomness.

    Returns
    -------
    TraceEstimate
        ``mean``, ``stderr``, ``n_probes``, ``samples`` (N,), per-block means and
        standard errors, and whether the tolerance was met.

    Raises
    ------
    ValueError
        If ``n_probes <= 0``, a tolerance is negative, or the loss or parameters are
        invalid (see :func:`hvp`).

    Examples
    --------
    >>> Hm = torch.diag(torch.tensor([1.0, 2.0, 3.0]))
    >>> loss = lambda p: 0.5 * p["x"] @ Hm @ p["x"]
    >>> g = torch.Generator().manual_seed(0)
    >>> r = estimate_hessian_trace(loss, {"x": torch.ones(3)}, n_probes=4, generator=g)
    >>> r.mean, r.stderr, r.n_probes      # one probe is exact for a diagonal Hessian
    (6.0, 0.0, 4)
    """
    p, layout, _ = _prepare(loss_fn, params)
    check_positive_int("n_probes", n_probes)
    check_positive_int("batch_size", batch_size)
    check_positive_int("min_probes", min_probes)
    if rtol is not None:
        rtol = check_real("rtol", rtol)
        if rtol < 0:
            raise ValueError(f"rtol: expected a number >= 0, got {rtol}")
    if atol is not None:
        atol = check_real("atol", atol)
        if atol < 0:
            raise ValueError(f"atol: expected a number >= 0, got {atol}")
    check_choice("method", method, ("auto", "quadratic_form", *HVP_METHODS))
    has_form = callable(getattr(loss_fn, "quadratic_form", None))
    if method == "auto":
        method = "quadratic_form" if has_form and blocks is None else "reverse_over_reverse"
    if method == "quadratic_form":
        if not has_form:
            raise ValueError(
                "method: 'quadratic_form' needs loss_fn.quadratic_form(params, directions) "
                "(as on the callables of nrnn_loss); use an HVP method for this loss"
            )
        if blocks is not None:
            raise ValueError(
                "blocks: per-block traces need Hessian-vector products; pass "
                "method='reverse_over_reverse' (or 'auto') with blocks"
            )

        def contributions(Z: Tensor) -> Tensor:
            with torch.no_grad():
                return loss_fn.quadratic_form(p, layout.unflatten(Z))[:, None]

        names: list[str] = []
    else:
        parts = _check_blocks(blocks, layout) if blocks is not None else {"all": layout.names}
        masks = _block_masks(parts, layout)
        op = _operator(loss_fn, p, layout, method, None)

        def contributions(Z: Tensor) -> Tensor:
            return (Z * op(Z)) @ masks.mT

        names = list(parts) if blocks is not None else []
    use_tol = rtol is not None or atol is not None
    rows: list[Tensor] = []  # per-probe block contributions (P, n_blocks)
    done = 0
    converged: bool | None = False if use_tol else None
    while done < n_probes:
        P = min(batch_size, n_probes - done)
        Z = _rademacher(P, layout, generator)
        rows.append(contributions(Z))
        done += P
        if use_tol and done >= min_probes and done >= 2:
            totals = torch.cat(rows).sum(dim=1)
            mean, se = _mean_stderr(totals)
            if float(se) <= (atol or 0.0) + (rtol or 0.0) * abs(float(mean)):
                converged = True
                break
    per_block = torch.cat(rows)
    samples = per_block.sum(dim=1)
    mean, se = _mean_stderr(samples)
    bmean, bse = _mean_stderr(per_block)
    return TraceEstimate(
        mean=float(mean),
        stderr=float(se),
        n_probes=int(samples.shape[0]),
        samples=samples,
        block_means=dict(zip(names, bmean.tolist(), strict=False)) if names else {},
        block_stderrs=dict(zip(names, bse.tolist(), strict=False)) if names else {},
        converged=converged,
        n_params=layout.n,
    )


# --------------------------------------------------------------------------- eigenvalues
def _eigen_method(solver: Callable) -> Callable:
    """An entry of :data:`EIGEN_METHODS`: ``solver`` on the flattened layout."""

    def run(op, layout, k, which, max_iter, tol, generator):
        like = torch.empty(0, dtype=layout.dtype, device=layout.device)
        return solver(
            op, layout.n, k, which, max_iter=max_iter, tol=tol, like=like, generator=generator
        )

    run.__name__ = f"_eig_{solver.__name__}"
    return run


#: Eigenvalue algorithms: name -> implementation.
EIGEN_METHODS: dict[str, Callable] = {
    "lanczos": _eigen_method(lanczos_extreme),
    "power": _eigen_method(subspace_iteration),
}


def hessian_eigenvalues(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    *,
    k: int = 1,
    which: Which = "largest",
    method: EigenMethod = "lanczos",
    max_iter: int | None = None,
    tol: float | None = None,
    hvp_method: HVPMethod = "reverse_over_reverse",
    return_eigenvectors: bool = False,
    generator: torch.Generator | None = None,
) -> HessianEigenvalues:
    r"""Extreme eigenvalues of the Hessian, with residuals (docs/theory/flatness.md).

    ``method="lanczos"`` (default): Lanczos with full reorthogonalization, written in
    torch. It was chosen over scipy's ``eigsh`` so that vectors stay on the device and
    in the dtype of the parameters (no host round trip per product), and because the
    same code drives :func:`estimate_spectral_density`. Full reorthogonalization costs
    ``O(m n)`` memory for ``m`` steps, negligible next to the products for the few
    dozen steps extreme eigenvalues of Hessians need. ``method="power"``: block power
    iteration with Rayleigh-Ritz, shifted by the spectral radius so that it finds the
    algebraic extremes; slower, offered as an independent check.

    Parameters
    ----------
    loss_fn, params
        As :func:`hvp`.
    k : int
        Number of eigenvalues, ``1 <= k <= n``.
    which : {"largest", "smallest", "magnitude"}
        ``"largest"``: the algebraic top (a Hessian at a non-minimum has negative
        eigenvalues; the most negative is ``"smallest"``); ``"magnitude"``: largest
        :math:`|\lambda|`, what plain power iteration finds.
    method : {"lanczos", "power"}
    max_iter : int, optional
        Lanczos steps (each one product; default ``min(n, max(3k, k + 60))``) or power
        iterations (each ``k + 2`` products; default 1000).
    tol : float, optional
        Convergence when every wanted residual :math:`\|Hy - \theta y\|` (estimated,
        for Lanczos) is below ``tol`` times the largest :math:`|\theta|`. Default
        :math:`\sqrt{\varepsilon}` of the dtype (1.5e-8 in float64, 3.5e-4 in float32).
    hvp_method : {"reverse_over_reverse", "forward_over_reverse"}
        As ``method`` of :func:`hvp`.
    return_eigenvectors : bool
        Keep the unit eigenvectors (k, n) in the flat layout.
    generator : torch.Generator, optional
        Start vectors; ``None`` means fresh randomness.

    Returns
    -------
    HessianEigenvalues
        ``eigenvalues`` (k,) (descending for ``"largest"`` and ``"magnitude"``,
        ascending for ``"smallest"``), ``residuals`` (k,) computed exactly with ``k``
        extra products, ``converged`` and ``n_hvps``.

    Raises
    ------
    ValueError
        If ``k`` exceeds the parameter count, or on invalid options or inputs.

    Examples
    --------
    >>> Hm = torch.diag(torch.tensor([-3.0, 1.0, 2.0], dtype=torch.float64))
    >>> loss = lambda p: 0.5 * p["x"] @ Hm @ p["x"]
    >>> g = torch.Generator().manual_seed(0)
    >>> x = {"x": torch.zeros(3, dtype=torch.float64)}
    >>> hessian_eigenvalues(loss, x, k=2, generator=g).eigenvalues.tolist()
    [2.0, 1.0]
    >>> hessian_eigenvalues(loss, x, which="magnitude", generator=g).eigenvalues.tolist()
    [-3.0]
    """
    p, layout, _ = _prepare(loss_fn, params)
    check_positive_int("k", k)
    if k > layout.n:
        raise ValueError(
            f"k: expected at most n = {layout.n} (the number of parameter entries), got {k}"
        )
    check_choice("which", which, ("largest", "smallest", "magnitude"))
    check_choice("method", method, EIGEN_METHODS)
    if max_iter is None:
        max_iter = min(layout.n, max(3 * k, k + 60)) if method == "lanczos" else 1000
    check_positive_int("max_iter", max_iter)
    if method == "lanczos" and max_iter < k:
        raise ValueError(f"max_iter: expected at least k = {k} Lanczos steps, got {max_iter}")
    tol = math.sqrt(torch.finfo(layout.dtype).eps) if tol is None else check_positive("tol", tol)
    op = _operator(loss_fn, p, layout, hvp_method, None)
    values, vectors, _, used, converged = EIGEN_METHODS[method](
        op, layout, k, which, max_iter, tol, generator
    )
    residuals = torch.linalg.vector_norm(op(vectors) - values[:, None] * vectors, dim=1)
    return HessianEigenvalues(
        eigenvalues=values,
        residuals=residuals,
        eigenvectors=vectors if return_eigenvectors else None,
        which=which,
        method=method,
        converged=bool(converged),
        n_hvps=used + k,
        n_params=layout.n,
    )


# --------------------------------------------------------------------------- SLQ
def estimate_spectral_density(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    *,
    n_probes: int = 10,
    n_steps: int = 40,
    n_grid: int = 500,
    bandwidth: float | None = None,
    max_moment: int = 4,
    hvp_method: HVPMethod = "reverse_over_reverse",
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    r"""Hessian eigenvalue density by stochastic Lanczos quadrature (docs/theory/flatness.md).

    For each of ``n_probes`` Rademacher probes :math:`v = z/\sqrt n`, ``m = n_steps``
    Lanczos steps give the Gauss quadrature nodes :math:`\theta_j` (Ritz values) and
    weights :math:`w_j = s_{1j}^2` (squared first components of the tridiagonal's
    eigenvectors), so that

    .. math:: v^\top f(H)\,v \approx \sum_{j=1}^m w_j f(\theta_j),\qquad
              \phi(t) = \frac1{n_v}\sum_{l=1}^{n_v}\sum_{j=1}^m w_{lj}\,
              \frac{e^{-(t-\theta_{lj})^2/2\sigma^2}}{\sqrt{2\pi}\sigma}.

    The quadrature is exact for polynomials of degree up to :math:`2m - 1`, so the
    raw moments :math:`\sum_j w_{lj}\theta_{lj}^q` are unbiased for
    :math:`\mathrm{tr}(H^q)/n` when :math:`q \le 2m - 1`; their mean over probes and
    standard error are reported.

    Parameters
    ----------
    loss_fn, params
        As :func:`hvp`.
    n_probes : int
        Independent probes, run together (their products batched by ``vmap``).
    n_steps : int
        Lanczos steps per probe (capped at ``n``). More steps resolve more of the
        spectrum; extreme eigenvalues converge first.
    n_grid : int
        Points of the evaluation grid, spanning the nodes plus five bandwidths.
    bandwidth : float, optional
        Standard deviation :math:`\sigma` of the Gaussian kernel. Default 1% of the
        node range (or 1e-3 of the largest node magnitude when the range is 0).
    max_moment : int
        Highest moment order reported; at most :math:`2m - 1`.
    hvp_method : {"reverse_over_reverse", "forward_over_reverse"}
    generator : torch.Generator, optional
        Source of the probes; ``None`` means fresh randomness.

    Returns
    -------
    SpectralDensity
        ``nodes`` and ``weights`` (n_probes, m), ``grid`` and ``density`` (n_grid,),
        ``bandwidth``, ``moments`` and ``moment_stderrs`` (max_moment + 1,).

    Examples
    --------
    >>> Hm = torch.diag(torch.tensor([1.0, 1.0, 4.0], dtype=torch.float64))
    >>> loss = lambda p: 0.5 * p["x"] @ Hm @ p["x"]
    >>> g = torch.Generator().manual_seed(0)
    >>> d = estimate_spectral_density(loss, {"x": torch.zeros(3, dtype=torch.float64)},
    ...                               n_probes=3, n_steps=2, max_moment=2, generator=g)
    >>> d.moments.tolist()           # tr(H^q)/n = 1, 2, 6 exactly, for every probe
    [1.0, 2.0, 6.0]
    """
    p, layout, _ = _prepare(loss_fn, params)
    check_positive_int("n_probes", n_probes)
    check_positive_int("n_steps", n_steps)
    check_positive_int("n_grid", n_grid, minimum=2)
    check_positive_int("max_moment", max_moment, minimum=0)
    m = min(n_steps, layout.n)
    if max_moment > 2 * m - 1:
        raise ValueError(
            f"max_moment: expected at most 2 m - 1 = {2 * m - 1} for m = {m} Lanczos steps "
            f"(higher moments are biased), got {max_moment}"
        )
    op = _operator(loss_fn, p, layout, hvp_method, None)
    Z = _rademacher(n_probes, layout, generator)
    alpha, beta = lanczos_tridiagonal(op, Z, m)
    nodes, S = ritz(alpha, beta)
    weights = S[:, 0, :] ** 2
    lo, hi = float(nodes.min()), float(nodes.max())
    if bandwidth is None:
        span = hi - lo
        bandwidth = 0.01 * span if span > 0 else 1e-3 * max(abs(lo), abs(hi), 1.0)
    bandwidth = check_positive("bandwidth", bandwidth)
    grid = torch.linspace(
        lo - 5 * bandwidth, hi + 5 * bandwidth, n_grid, dtype=layout.dtype, device=layout.device
    )
    u = (grid[:, None, None] - nodes[None]) / bandwidth
    kernel = torch.exp(-0.5 * u * u) / (math.sqrt(2 * math.pi) * bandwidth)
    density = (kernel * weights[None]).sum(dim=2).mean(dim=1)
    q = torch.arange(max_moment + 1, dtype=layout.dtype, device=layout.device)
    per_probe = (weights[:, :, None] * nodes[:, :, None] ** q).sum(dim=1)  # (P, Q+1)
    moments, moment_se = _mean_stderr(per_probe)
    return SpectralDensity(
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=density,
        bandwidth=bandwidth,
        moments=moments,
        moment_stderrs=moment_se,
        n_probes=n_probes,
        n_steps=m,
        n_params=layout.n,
    )


# --------------------------------------------------------------------------- hidden state
def hidden_state_hessian(
    params: NRNNParams,
    xs: Tensor,
    labels: Tensor,
    *,
    noise: NoiseSpec | None = None,
    eta: Tensor | None = None,
    h0: Tensor | None = None,
) -> HiddenStateHessian:
    r"""Hessian of the readout loss in the final hidden state, per example.

    .. math:: H_\ell = \nabla^2_h\,\mathrm{CE}(Vh + c, y)\big|_{h = h_M}
              = V^\top(\mathrm{diag}(p) - pp^\top)V

    the matrix :math:`H_\ell` that weights the state covariance in the regularizer
    :math:`\hat R = \mathrm{tr}(H_\ell\hat\Sigma_M)` (docs/theory/regularizer.md), evaluated at the
    clean final state or at the end of a frozen noise path.

    Parameters
    ----------
    params : NRNNParams
    xs : Tensor, shape (B, T, D)
    labels : Tensor, shape (B,)
        Integer class indices.
    noise : NoiseSpec, optional
        With ``eta``, the noise of a frozen path; ``None`` is the clean rollout.
    eta : Tensor, shape (B, T, r), optional
        Standardized draws (see :func:`~nrnn_theory.rollout`); required with ``noise``.
    h0 : Tensor, shape (B, H), optional

    Returns
    -------
    HiddenStateHessian
        ``state`` (B, H), ``loss`` (B,), ``grad`` (B, H), ``hessian`` (B, H, H),
        ``trace`` (B,) and ``eigenvalues`` (B, H) ascending; rank at most ``C - 1``.

    Examples
    --------
    >>> p = NRNNParams(A=-torch.eye(2), W=torch.zeros(2, 2), U=torch.zeros(2, 1),
    ...                b=torch.zeros(2), V=torch.eye(2), c=torch.zeros(2), dt=0.1)
    >>> r = hidden_state_hessian(p, torch.zeros(1, 3, 1), torch.tensor([0]))
    >>> r.trace.tolist(), r.eigenvalues.tolist()
    ([0.5], [[0.0, 0.5]])
    """
    params = check_params(params)
    noise = check_noise(noise)
    check_linalg_dtype("params", params.A, "the eigendecomposition of the Hessian")
    if noise is not None and eta is None:
        raise ValueError(
            "eta: expected a frozen noise path (B, T, r) with noise (see sample_noise); got None"
        )
    h = rollout(params, xs, noise=noise, eta=eta, h0=h0)
    loss, g, Hl = cross_entropy_derivatives(params, h, labels)
    return HiddenStateHessian(
        state=h,
        loss=loss,
        grad=g,
        hessian=Hl,
        trace=torch.diagonal(Hl, dim1=-2, dim2=-1).sum(-1),
        eigenvalues=torch.linalg.eigvalsh(Hl),
    )
