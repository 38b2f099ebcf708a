"""One-sided constants: how much each sound method tightens, and what it costs.

Models: random Lipschitz-RNNs (free matrices with std 1/sqrt(H), beta = 0.75 or 0.25;
the constants scale linearly with the weights, so one scale suffices) and, unless
``--quick``, an H = 64 model trained briefly on the UCI digits without noise, with
additive and with scalar multiplicative noise (this script's own minimal full-batch
Adam loop). For each it prints :math:`\\hat\\lambda` by the ``standard``,
``midpoint`` and ``relaxation`` methods of :func:`nrnn_theory.one_sided_constant` next
to the truth they bound: the exact vertex maximum for ``H <= 12``, otherwise a vertex
*lower* bound (greedy coordinate ascent over vertices, several restarts), so the true
value lies in ``[lower, relaxation]`` and "closed" (the share of the midpoint's excess
removed by the relaxation) is then an underestimate. For the trained models it also
prints the measured clean top Lyapunov exponent on test digits.

Times (``benchmarks/_timing.py``): the relaxation (the package's method above
``H = 12``) against the exact enumeration of the ``2^H`` vertices (the reference) at
``H = 12``, in interleaved rounds, and the relaxation alone at larger ``H``. The
**floor** of each is its arithmetic at the GFLOP/s this machine measures now for
(H x H) @ (H x H) float64 products: the relaxation's matrix-product FLOPs as counted by
``torch.profiler`` plus its symmetric eigendecompositions (9 H^3 each with vectors,
4/3 H^3 without, Golub & Van Loan), the enumeration's ``2^H`` eigenvalue problems
(4/3 H^3 each) and matrix assemblies (2 H^2 each).

Run: ``python benchmarks/bench_one_sided.py`` (``--quick`` for a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _timing import compare, floor_seconds, machine_line, measured_gflops, report

from nrnn_theory import NoiseSpec, NRNNParams, lyapunov_spectrum, one_sided_constant, readout
from nrnn_theory import rollout as nrnn_rollout


def lipschitz_model(H: int, scale: float, seed: int, D: int = 1, beta: float = 0.75) -> NRNNParams:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return std * torch.randn(*shape, generator=g, dtype=torch.float64)

    return NRNNParams.from_lipschitz(
        randn(H, H, std=scale / math.sqrt(H)),
        randn(H, H, std=scale / math.sqrt(H)),
        randn(H, D, std=1.0),
        torch.zeros(H, dtype=torch.float64),
        randn(10, H, std=1.0 / math.sqrt(H)),
        torch.zeros(10, dtype=torch.float64),
        beta=beta,
        gamma_A=1e-3,
        gamma_W=1e-3,
        dt=0.1,
    )


def vertex_lower_bound(p: NRNNParams, restarts: int = 8, seed: int = 0) -> float:
    """max over visited vertices D of lambda_max(sym(alpha A + D W)): a lower bound."""
    A = p.alpha * p.A.double()
    W = p.W.double()
    g = torch.Generator().manual_seed(seed)
    best = -math.inf
    for _ in range(restarts):
        d = torch.randint(0, 2, (p.hidden_size,), generator=g).double()
        value = -math.inf
        for _ in range(200):
            M = A + d[:, None] * W
            w, V = torch.linalg.eigh(0.5 * (M + M.T))
            if float(w[-1]) <= value + 1e-13:
                break
            value = float(w[-1])
            x = V[:, -1]
            d = (x * (W @ x) > 0).double()  # the best vertex for this eigenvector
        best = max(best, value)
    return best


def row(name: str, p: NRNNParams) -> str:
    std, mid = one_sided_constant(p, "standard"), one_sided_constant(p, "midpoint")
    t0 = time.perf_counter()
    rel = one_sided_constant(p, "relaxation")
    t_rel = time.perf_counter() - t0
    if p.hidden_size <= 12:
        truth, kind = one_sided_constant(p, "exact"), "exact"
    else:
        truth, kind = vertex_lower_bound(p), "lower"
    closed = (mid - rel) / (mid - truth) if mid > truth else float("nan")
    return (
        f"{name:<32} {p.hidden_size:>4} {std:>9.4f} {mid:>9.4f} {rel:>9.4f} {truth:>9.4f} "
        f"{kind:>5} {closed:>7.1%} {t_rel:>7.2f}"
    )


def relaxation_flops(p: NRNNParams) -> float:
    """Arithmetic of one relaxation solve: profiled matrix products + eigendecompositions."""
    from torch.profiler import profile

    H = p.hidden_size
    with profile(with_flops=True) as prof:
        one_sided_constant(p, "relaxation")
    events = {e.key: e for e in prof.key_averages()}
    products = sum(e.flops for e in events.values() if e.flops)
    with_vectors = events["aten::linalg_eigh"].count if "aten::linalg_eigh" in events else 0
    all_eigh = events["aten::_linalg_eigh"].count if "aten::_linalg_eigh" in events else 0
    return products + with_vectors * 9.0 * H**3 + (all_eigh - with_vectors) * 4.0 / 3.0 * H**3


def exact_flops(H: int) -> float:
    """The enumeration's arithmetic: 2^H symmetric eigenvalue problems and assemblies."""
    return 2.0**H * (4.0 / 3.0 * H**3 + 2.0 * H**2)


def timing(sizes, rounds: int, seed: int) -> None:
    """Relaxation vs exact enumeration (H <= 12), and the relaxation alone above."""
    rows = []
    for H in sizes:
        p = lipschitz_model(H, 3.0 if H == 12 else 1.0, seed)
        fns = {"relaxation": lambda p=p: one_sided_constant(p, "relaxation")}
        if H <= 12:
            fns["exact"] = lambda p=p: one_sided_constant(p, "exact")
        cmp = compare(fns, rounds=rounds)
        gflops = measured_gflops((H, H, H), dtype=torch.float64)
        ref = cmp.times.get("exact")
        rows.append(
            (
                f"relaxation, H = {H}",
                cmp.times["relaxation"],
                ref,
                floor_seconds(relaxation_flops(p), gflops),
            )
        )
        if ref is not None:
            rows.append(
                (f"exact enumeration, H = {H}", ref, None, floor_seconds(exact_flops(H), gflops))
            )
        print(f"H = {H}: measured {gflops:.2f} GFLOP/s on ({H}x{H})@({H}x{H}) float64")
    print(report(rows))


def digits(n: int):
    from sklearn.datasets import load_digits

    data = load_digits()
    xs = torch.as_tensor(data.data[:n], dtype=torch.float64).reshape(n, 64, 1) / 16.0
    return xs, torch.as_tensor(data.target[:n], dtype=torch.long)


def train(p: NRNNParams, xs, ys, noise, steps: int, lr: float, seed: int) -> NRNNParams:
    """Full-batch Adam on (M_A, M_W)-free parameters A, W, U, b, V, c, via torch.func."""
    names = ("A", "W", "U", "b", "V", "c")
    theta = {k: getattr(p, k).clone() for k in names}
    g = torch.Generator().manual_seed(seed)

    def loss(th):
        q = p.replace(**th)
        h = nrnn_rollout(q, xs, noise=noise, generator=g) if noise else nrnn_rollout(q, xs)
        return torch.nn.functional.cross_entropy(readout(q, h), ys)

    grad = torch.func.grad(loss)
    m = {k: torch.zeros_like(v) for k, v in theta.items()}
    v = {k: torch.zeros_like(t) for k, t in theta.items()}
    for t in range(1, steps + 1):
        gr = grad(theta)
        for k in names:
            m[k] = 0.9 * m[k] + 0.1 * gr[k]
            v[k] = 0.999 * v[k] + 0.001 * gr[k] ** 2
            theta[k] = theta[k] - lr * (m[k] / (1 - 0.9**t)) / (
                (v[k] / (1 - 0.999**t)).sqrt() + 1e-8
            )
    return p.replace(**theta)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--train-steps", type=int, default=300, help="Adam steps per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(machine_line())
    sizes = (8, 12) if args.quick else (8, 12, 32, 64, 128)
    betas = (0.75,) if args.quick else (0.75, 0.25)
    print(
        f"{'model':<32} {'H':>4} {'standard':>9} {'midpoint':>9} {'relax':>9} {'truth':>9} "
        f"{'kind':>5} {'closed':>7} {'relax s':>7}"
    )
    for H in sizes:
        for beta in betas:
            p = lipschitz_model(H, 1.0, args.seed, beta=beta)
            print(row(f"random, beta = {beta:g}", p))
    print()
    timing((12,) if args.quick else (12, 32, 64, 128), 1 if args.quick else args.rounds, args.seed)
    if args.quick:
        return 0
    xs, ys = digits(1000)
    train_x, train_y, test_x = xs[:768], ys[:768], xs[768:]
    base = lipschitz_model(64, 1.0, args.seed)
    for label, noise in (
        ("trained clean", None),
        ("trained, additive eps*s1=0.3", NoiseSpec(sigma1=0.3)),
        ("trained, scalar eps*s2=1", NoiseSpec(sigma1=0.3, sigma2=1.0, structure="scalar")),
    ):
        t0 = time.perf_counter()
        p = train(base, train_x, train_y, noise, args.train_steps, 1e-2, args.seed)
        t_train = time.perf_counter() - t0
        acc = (readout(p, nrnn_rollout(p, test_x)).argmax(1) == ys[768:]).double().mean()
        print(row(f"{label} (acc {acc:.2f})", p) + f"   [trained in {t_train:.0f} s]")
        spec = lyapunov_spectrum(
            p, test_x, k=1, transient=8, generator=torch.Generator().manual_seed(1)
        )
        print(
            f"{'':<28}      measured clean top exponent on test digits "
            f"{spec.top:+.4f} ± {float(spec.stderr[0]):.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
