"""The one timing helper of ``benchmarks/``: interleaved rounds and the arithmetic floor.

Every benchmark reports, in one run, three numbers for the same workload:

* the package's time;
* the reference a user would otherwise run (the authors' code, torchsde, PyHessian,
  ``jacrev`` + QR, ...);
* the **arithmetic floor**: the FLOPs of the workload divided by the GFLOP/s this
  machine measures *now* for the same shapes (:func:`measured_gflops`). A
  hand-written loop is a reference, never a floor.

Timings are taken in interleaved rounds (package, reference, package, ...), and
ratios are the median of per-round ratios, so a load change on a shared machine
moves both sides of a ratio together (:func:`compare`).

FLOP counts (:func:`matmul_flops`, :func:`qr_flops`) use the standard counts: a
real ``(m, k) @ (k, n)`` product is ``2 m k n``; Householder QR of an ``m x n``
matrix (``m >= n``) with the thin ``Q`` formed is ``4 m n^2 - 4/3 n^3``
(Golub & Van Loan, 4th ed., §5.2).
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch


__all__ = [
    "Comparison",
    "compare",
    "floor_seconds",
    "machine_line",
    "matmul_flops",
    "measured_gflops",
    "qr_flops",
    "report",
    "time_call",
]


def time_call(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass(frozen=True)
class Comparison:
    """Medians of interleaved timings and the median of per-round ratios."""

    times: dict[str, float]
    ratios: dict[str, float]  # "a/b" -> median over rounds of t_a / t_b
    rounds: int

    def line(self, a: str, b: str) -> str:
        return f"{a}/{b} = {self.ratios[f'{a}/{b}']:.2f}x"


def compare(
    fns: dict[str, Callable[[], object]], *, rounds: int = 5, warmup: int = 1
) -> Comparison:
    """Time several callables in interleaved rounds; every pairwise ratio per round.

    Parameters
    ----------
    fns : dict of name -> callable
        The workloads, e.g. ``{"package": ..., "reference": ...}``.
    rounds : int
        Rounds; in each round every callable runs once, in the given order.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            fn()
            per[name].append(time.perf_counter() - t0)
    ratios = {}
    for a in fns:
        for b in fns:
            if a != b:
                ratios[f"{a}/{b}"] = statistics.median(
                    x / y for x, y in zip(per[a], per[b], strict=True)
                )
    return Comparison({k: statistics.median(v) for k, v in per.items()}, ratios, rounds)


def matmul_flops(m: int, k: int, n: int, *, batch: int = 1) -> float:
    """FLOPs of ``batch`` real products ``(m, k) @ (k, n)``: ``2 m k n`` each."""
    return 2.0 * batch * m * k * n


def qr_flops(m: int, n: int, *, batch: int = 1) -> float:
    """FLOPs of ``batch`` thin Householder QRs of ``m x n`` (``m >= n``), Q formed."""
    return batch * (4.0 * m * n * n - 4.0 / 3.0 * n**3)


_GFLOPS_CACHE: dict[tuple, float] = {}


def measured_gflops(
    shapes: Iterable[tuple[int, int, int]] | tuple[int, int, int],
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seconds: float = 0.3,
) -> float:
    """GFLOP/s this machine reaches now on matrix products of the given shapes.

    Times ``torch.matmul`` (``torch.bmm`` when ``batch > 1``) on each ``(m, k, n)``
    with the current torch thread count and returns total FLOPs / total time, the
    best of three measurement windows of about ``seconds`` each. This is the rate
    the floor divides by: the same shapes the workload multiplies, so the floor is
    what the workload would cost if it were nothing but its matrix products.
    """
    shapes = [shapes] if isinstance(shapes[0], int) else list(shapes)  # type: ignore[index]
    key = (tuple(shapes), batch, dtype, str(device), torch.get_num_threads())
    if key in _GFLOPS_CACHE:
        return _GFLOPS_CACHE[key]
    g = torch.Generator(device="cpu").manual_seed(0)
    ops = []
    for m, k, n in shapes:
        lead = (batch,) if batch > 1 else ()
        a = torch.randn(*lead, m, k, generator=g, dtype=dtype).to(device)
        b = torch.randn(*lead, k, n, generator=g, dtype=dtype).to(device)
        ops.append((a, b, matmul_flops(m, k, n, batch=batch)))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def one_pass() -> float:
        for a, b, _ in ops:
            torch.matmul(a, b)
        sync()
        return sum(f for *_, f in ops)

    one_pass()
    best = 0.0
    for _ in range(3):
        flops, t0 = 0.0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            flops += one_pass()
        best = max(best, flops / (time.perf_counter() - t0) / 1e9)
    _GFLOPS_CACHE[key] = best
    return best


def machine_line() -> str:
    """One line naming the machine, torch, threads and load, for benchmark output."""
    try:
        load = "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "load n/a"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {cuda}, {load}"
    )


def floor_seconds(flops: float, gflops: float) -> float:
    """The arithmetic floor: ``flops`` at ``gflops`` GFLOP/s, in seconds."""
    return flops / (gflops * 1e9)


def report(rows: Sequence[tuple[str, float, float | None, float]]) -> str:
    """Rows of ``(workload, package s, reference s or None, floor s)`` as a table."""
    out = [
        f"{'workload':<34} {'package':>10} {'reference':>10} {'floor':>10} "
        f"{'pkg/floor':>9} {'ref/pkg':>8}"
    ]
    for name, pkg, ref, fl in rows:
        ref_s = f"{ref:10.4f}" if ref is not None else f"{'-':>10}"
        speed = f"{ref / pkg:8.2f}" if ref is not None else f"{'-':>8}"
        out.append(f"{name:<34} {pkg:10.4f} {ref_s} {fl:10.4f} {pkg / fl:9.2f} {speed}")
    return "\n".join(out)
