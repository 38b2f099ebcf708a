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

Each case runs in a fresh subprocess that reports its wall time (best of
``--repeats`` after one warm-up) and its peak resident memory above the baseline
reached after building the inputs (``ru_maxrss``), so memory of one case does not
leak into the next.

Run: ``.venv/bin/python benchmarks/bench_margins.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time


CASES = (
    "power (analytic tangent/adjoint)",
    "power (autograd, double-backward JVP)",
    "gram (analytic, exact)",
    "reference: jacrev over the batch + SVD",
    "reference: vmap(jacrev) per example + SVD",
)


def _setup(T: int, H: int, B: int, C: int, seed: int):
    import torch

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


def _run_case(case, T, H, B, C, repeats, threads, queue) -> None:
    import torch

    from nrnn_theory import jacobian_spectral_norm, logits

    if threads:
        torch.set_num_threads(threads)
    params, xs = _setup(T, H, B, C, seed=0)

    def f(x):
        return logits(params, x)

    def run():
        if case.startswith("power (analytic"):
            r = jacobian_spectral_norm(params, xs, generator=torch.Generator().manual_seed(1))
            return r.norm, r.n_iter
        if case.startswith("power (autograd"):
            r = jacobian_spectral_norm(f, xs, generator=torch.Generator().manual_seed(1))
            return r.norm, r.n_iter
        if case.startswith("gram"):
            return jacobian_spectral_norm(params, xs, method="gram").norm, 0
        if case.startswith("reference: jacrev"):
            J = torch.func.jacrev(f)(xs)  # (B, C, B, T, D): the whole batch Jacobian
            idx = torch.arange(B)
            Jb = J[idx, :, idx].reshape(B, C, -1)
            return torch.linalg.matrix_norm(Jb, ord=2), 0

        def single(x):
            return f(x.unsqueeze(0)).squeeze(0)

        J = torch.func.vmap(torch.func.jacrev(single))(xs).reshape(B, C, -1)
        return torch.linalg.matrix_norm(J, ord=2), 0

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    norm, n_iter = run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        norm, n_iter = run()
        best = min(best, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    queue.put((best, peak / 1024.0, norm.tolist(), n_iter))


class _ListQueue:
    """Stands in for a multiprocessing queue when a case runs in-process."""

    def __init__(self) -> None:
        self.items: list = []

    def put(self, item) -> None:
        self.items.append(item)


def _measure(case: str, T: int, H: int, B: int, C: int, repeats: int, threads: int):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run_case, args=(case, T, H, B, C, repeats, threads, q))
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
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per case (0: torch's default)"
    )
    args = parser.parse_args(argv)
    T, H, B, C, rep = args.T, args.hidden, args.batch, args.classes, args.repeats
    if args.quick:
        T, H, B, rep = 64, 32, 4, 1

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"bench_margins: T={T}, H={H}, D=1, B={B}, C={C}, float64, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        + (" (quick: in-process, no memory figures)" if args.quick else "")
    )
    if args.quick:  # in-process: a seconds-long smoke run, no subprocess start-up
        results = {}
        for case in CASES:
            q = _ListQueue()
            _run_case(case, T, H, B, C, rep, args.threads, q)
            t, _, norm, n_iter = q.items[0]
            results[case] = (t, float("nan"), norm, n_iter)
    else:
        results = {case: _measure(case, T, H, B, C, rep, args.threads) for case in CASES}
    ref_t, ref_mem, ref_norm, _ = results[CASES[3]]
    print(
        f"{'case':<44}{'time (s)':>10}{'peak MiB':>10}{'iters':>7}{'speed-up':>10}"
        f"{'max rel err':>13}"
    )
    for case, (t, mem, norm, n_iter) in results.items():
        err = max(abs(a - b) / abs(b) for a, b in zip(norm, ref_norm, strict=True))
        print(f"{case:<44}{t:>10.3f}{mem:>10.1f}{n_iter:>7}{ref_t / t:>10.1f}{err:>13.1e}")
    print(
        "speed-up: reference (jacrev over the batch) time / case time; "
        f"J alone is B*C*B*T*D*8 bytes = {B * C * B * T * 8 / 2**20:.1f} MiB for jacrev over the "
        f"batch, the analytic passes keep B*T*H*8 = {B * T * H * 8 / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
