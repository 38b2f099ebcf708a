"""Jacobian spectral norm of a long sequence: JVP/VJP power iteration vs the full Jacobian.

For a clean NRNN on sequences of length T (default 784, pixel-by-pixel MNIST), the
input-output Jacobian J(x) is C x T*D per example. The package computes ||J(x)||_2
by power iteration on the C x C matrix J J^T, one tangent and one adjoint pass per
iteration, never forming J (``nrnn_theory.jacobian_spectral_norm``), and exactly
from the C x C Gram matrix of one adjoint pass with C cotangents (``method="gram"``).
The references materialise J with ``torch.func.jacrev``, over the whole batch
(what "the full Jacobian" of a batched model is: B x C rows, most of them zero
cross-example blocks) and per example (``vmap(jacrev)``, C rows per example), and
take its largest singular value.

* **floor**: the arithmetic of the exact answer, a forward pass
  (T products (B, H) @ (H, 2H)) and one adjoint pass carrying C cotangents (T products
  (B C, 2H) @ (2H, H)), divided by the GFLOP/s this machine measures now for those
  shapes (``benchmarks/_timing.py``). Power iteration's own arithmetic (a tangent and
  an adjoint pass with one vector per iteration) is printed beside it.
* **times**: every case in one process, in interleaved rounds, medians of per-round
  ratios (``_timing.compare``).
* **memory**: each case once in a fresh subprocess, started before this process runs
  any case, its peak resident memory above the baseline reached after building the
  inputs (``ru_maxrss``); ``--no-memory`` skips it.

Run: ``python benchmarks/bench_margins.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys

import torch
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report


CASES = (
    "power, analytic passes",
    "power, autograd (double backward)",
    "gram, analytic (exact)",
    "ref: jacrev over the batch + SVD",
    "ref: vmap(jacrev) per example+SVD",
)
REFERENCE = CASES[3]


def _setup(T: int, H: int, B: int, C: int, seed: int):
    from nrnn_theory import NRNNParams

    g = torch.Generator().manual_seed(seed)
    dt = torch.float64

    def r(*shape, s=1.0):
        return s * torch.randn(*shape, generator=g, dtype=dt)

    params = NRNNParams.from_lipschitz(
        r(H, H, s=1 / H),
        r(H, H, s=1 / H),
        r(H, 1),
        r(H, s=0.1),
        r(C, H, s=1 / H**0.5),
        r(C, s=0.1),
        beta=0.75,
        gamma_A=1e-3,
        gamma_W=1e-3,
        dt=0.03,
    )
    xs = torch.rand(B, T, 1, generator=g, dtype=dt)
    return params, xs


def case_fn(case: str, params, xs):
    """A callable returning ``(norms (B,), iterations)`` for ``case``."""
    from nrnn_theory import jacobian_spectral_norm, logits

    B, C = xs.shape[0], params.V.shape[0]

    def f(x):
        return logits(params, x)

    def single(x):
        return f(x.unsqueeze(0)).squeeze(0)

    def run():
        if case.startswith("power, analytic"):
            r = jacobian_spectral_norm(params, xs, generator=torch.Generator().manual_seed(1))
            return r.norm, r.n_iter
        if case.startswith("power, autograd"):
            r = jacobian_spectral_norm(f, xs, generator=torch.Generator().manual_seed(1))
            return r.norm, r.n_iter
        if case.startswith("gram"):
            return jacobian_spectral_norm(params, xs, method="gram").norm, 0
        if case == REFERENCE:
            J = torch.func.jacrev(f)(xs)  # (B, C, B, T, D): the whole batch Jacobian
            idx = torch.arange(B)
            return torch.linalg.matrix_norm(J[idx, :, idx].reshape(B, C, -1), ord=2), 0
        J = torch.func.vmap(torch.func.jacrev(single))(xs).reshape(B, C, -1)
        return torch.linalg.matrix_norm(J, ord=2), 0

    return run


def _memory_case(case, T, H, B, C, threads, queue) -> None:
    """Subprocess entry: peak RSS (MiB) of one run of ``case`` above the set-up's."""
    if threads:
        torch.set_num_threads(threads)
    params, xs = _setup(T, H, B, C, seed=0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    case_fn(case, params, xs)()
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0)


def _memory(case: str, T: int, H: int, B: int, C: int, threads: int) -> float:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_memory_case, args=(case, T, H, B, C, threads, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--T", type=int, default=784, help="sequence length")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units H")
    parser.add_argument("--batch", type=int, default=32, help="examples B")
    parser.add_argument("--classes", type=int, default=10, help="classes C")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args(argv)
    T, H, B, C, rounds = args.T, args.hidden, args.batch, args.classes, args.rounds
    if args.quick:
        T, H, B, rounds = 64, 32, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line())
    print(f"bench_margins: T={T}, H={H}, D=1, B={B}, C={C}, float64")
    # Memory first: a child inherits its parent's peak RSS (Linux keeps ru_maxrss across
    # fork and exec), so the children must start before this process runs any case.
    mem = {}
    if not (args.quick or args.no_memory):
        mem = {case: _memory(case, T, H, B, C, args.threads) for case in CASES}
    params, xs = _setup(T, H, B, C, seed=0)
    fns = {case: case_fn(case, params, xs) for case in CASES}
    outputs = {case: fn() for case, fn in fns.items()}  # also the warm-up
    cmp = compare(fns, rounds=rounds, warmup=0)

    dtype = torch.float64
    shapes = [(B, H, 2 * H), (B * C, 2 * H, H)]
    gflops = measured_gflops(shapes, dtype=dtype)
    fwd = T * matmul_flops(B, H, 2 * H)
    adjoint = T * matmul_flops(B * C, 2 * H, H)
    n_iter = outputs[CASES[0]][1]
    power = fwd + n_iter * T * (matmul_flops(B, H, 2 * H) + matmul_flops(B, 2 * H, H))
    fl = floor_seconds(fwd + adjoint, gflops)
    print(
        f"floor: forward + one adjoint pass with C cotangents = {(fwd + adjoint) / 1e9:.2f} "
        f"GFLOP at {gflops:.1f} GFLOP/s ({shapes}, float64) = {fl:.4f} s; power iteration's "
        f"own arithmetic ({n_iter} iterations) {power / 1e9:.2f} GFLOP = "
        f"{floor_seconds(power, gflops):.4f} s"
    )
    ref_t = cmp.times[REFERENCE]
    print(report([(case, cmp.times[case], ref_t, fl) for case in CASES]))
    ref_norm = outputs[REFERENCE][0]
    print(f"\n{'case':<36}{'iters':>6}{'ref/case (rounds)':>19}{'max rel err':>13}{'peak MiB':>10}")
    for case in CASES:
        norm, iters = outputs[case]
        err = float(((norm - ref_norm).abs() / ref_norm.abs()).max())
        ratio = 1.0 if case == REFERENCE else cmp.ratios[f"{REFERENCE}/{case}"]
        peak = f"{mem[case]:10.1f}" if case in mem else f"{'-':>10}"
        print(f"{case:<36}{iters:>6}{ratio:>18.1f}x{err:>13.1e}{peak}")
    print(
        f"J alone is B*C*B*T*D*8 bytes = {B * C * B * T * 8 / 2**20:.1f} MiB for jacrev over the "
        f"batch; the analytic passes keep B*T*H*8 = {B * T * H * 8 / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
