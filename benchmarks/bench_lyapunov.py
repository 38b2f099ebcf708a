"""Full Lyapunov spectrum of an NRNN: analytic tangents vs per-step autograd vs the floor.

The package's :func:`nrnn_theory.lyapunov_spectrum` streams over time with analytic
step Jacobians (``StepKernel.jacobian``) and a batched sign-corrected QR. Two
references run in the same process on the same model and inputs:

* **autograd**: the usual approach, a per-step ``torch.func.vmap(torch.func.jacrev(step))``
  Jacobian, then the same product and QR;
* **floor**: only the arithmetic that cannot be avoided, the same batched matrix
  products and QRs in a tight loop on a fixed Jacobian.

At k = H = 128 the QR dominates the floor, so the script also prints cost and
accuracy against ``reortho_every`` (1, 2, 5, 10), accuracy measured against a
float64 run with ``reortho_every=1``, and whether each setting stays within 1e-3
of it. Finally it checks that peak memory does not grow with T (two child processes,
T and 8T).

Model: a Lipschitz-RNN parametrization (beta = 0.75, gamma = ``--gamma`` (1e-3),
dt = 0.1, free matrices with std ``--weight-scale / sqrt(H)``), inputs uniform in [0, 1] with D = 1
(pixel-MNIST shaped: T = 784), float32.

Run: ``python benchmarks/bench_lyapunov.py`` (``--quick`` for a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import time

import torch

from nrnn_theory import NRNNParams, lyapunov_spectrum
from nrnn_theory._linalg import qr_positive


def model(
    H: int, dtype: torch.dtype, seed: int, weight_scale: float, gamma: float = 1e-3
) -> NRNNParams:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return std * torch.randn(*shape, generator=g, dtype=torch.float64)

    std = weight_scale / math.sqrt(H)
    p = NRNNParams.from_lipschitz(
        randn(H, H, std=std),
        randn(H, H, std=std),
        randn(H, 1, std=1.0),
        randn(H, std=0.1),
        randn(10, H, std=1.0 / math.sqrt(H)),
        torch.zeros(10, dtype=torch.float64),
        beta=0.75,
        gamma_A=gamma,
        gamma_W=gamma,
        dt=0.1,
    )
    return p.to(dtype)


def inputs(B: int, T: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(B, T, 1, generator=g, dtype=torch.float64).to(dtype)


def package(params, xs, every: int, transient: int) -> torch.Tensor:
    spec = lyapunov_spectrum(
        params,
        xs,
        transient=transient,
        reortho_every=every,
        generator=torch.Generator().manual_seed(0),
    )
    return spec.exponents


def autograd_reference(params, xs, every: int, transient: int) -> torch.Tensor:
    """Per-step jacrev Jacobians, batched with vmap, then the same Benettin loop."""
    A, W, U, b, dt = params.A, params.W, params.U, params.b, params.dt
    B, T, _ = xs.shape
    H = A.shape[0]

    def f(h, ux):
        return h + dt * (A @ h + torch.tanh(W @ h + ux))

    jac = torch.func.vmap(torch.func.jacrev(f))
    step = torch.func.vmap(f)
    g = torch.Generator().manual_seed(0)
    Q = qr_positive(torch.randn(B, H, H, generator=g, dtype=torch.float64))[0].to(xs.dtype)
    h = xs.new_zeros(B, H)
    acc = xs.new_zeros(B, H)
    since = 0
    for t, ux in enumerate((xs @ U.mT + b).unbind(1), start=1):
        Q = torch.bmm(jac(h, ux), Q)
        h = step(h, ux)
        since += 1
        if since == every or t == transient or t == T:
            Q, R = qr_positive(Q)
            since = 0
            if t > transient:
                acc = acc + torch.log(torch.diagonal(R, dim1=-2, dim2=-1))
    return torch.sort(acc.mean(0) / ((T - transient) * dt), descending=True).values


def floor(B: int, H: int, T: int, every: int, dtype: torch.dtype) -> None:
    """The unavoidable arithmetic: T batched products and T / every batched QRs."""
    g = torch.Generator().manual_seed(0)
    J = torch.eye(H, dtype=dtype) + 0.01 * torch.randn(B, H, H, generator=g, dtype=dtype)
    Q = qr_positive(torch.randn(B, H, H, generator=g, dtype=dtype))[0]
    acc = torch.zeros(B, H, dtype=dtype)
    for t in range(1, T + 1):
        Q = torch.bmm(J, Q)
        if t % every == 0 or t == T:
            Q, R = qr_positive(Q)
            acc = acc + torch.log(torch.diagonal(R, dim1=-2, dim2=-1))


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def memory_probe(H: int, B: int, T: int, weight_scale: float, gamma: float) -> None:
    """Child-process entry: run the package once and print peak RSS (MiB).

    Memory depends only on the shapes; gamma >= 1 keeps the state finite over 8T steps.
    """
    params = model(H, torch.float32, 0, weight_scale, max(gamma, 1.0))
    package(params, inputs(B, T, torch.float32, 0), 1, T // 10)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--hidden", type=int, default=128, help="H (= k, full spectrum)")
    parser.add_argument("--steps", type=int, default=784, help="sequence length T")
    parser.add_argument("--batch", type=int, default=16, help="trajectories B")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best kept)")
    parser.add_argument("--weight-scale", type=float, default=1.0, help="std * sqrt(H)")
    parser.add_argument("--gamma", type=float, default=1e-3, help="gamma_A = gamma_W")
    parser.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.steps, args.batch, args.repeats = 32, 64, 4, 1
    if args.memory_probe:
        memory_probe(args.hidden, args.batch, args.memory_probe, args.weight_scale, args.gamma)
        return 0
    H, T, B = args.hidden, args.steps, args.batch
    transient = T // 10
    print(
        f"Lyapunov spectrum, k = H = {H}, T = {T}, B = {B}, float32, transient {transient}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    params = model(H, torch.float32, 0, args.weight_scale, args.gamma)
    xs = inputs(B, T, torch.float32, 0)
    ref64 = package(params.to(torch.float64), xs.to(torch.float64), 1, transient)
    print(f"float64 reference spectrum: top {ref64[0]:.4f}, bottom {ref64[-1]:.4f} per unit time")
    header = (
        f"{'reortho':>7} {'package s':>10} {'autograd s':>11} {'floor s':>8} "
        f"{'autograd/pkg':>12} {'pkg/floor':>9} {'max |err|':>10} {'<= 1e-3':>7}"
    )
    print(header)
    autograd_reference(params, xs[:, :4], 1, 1)  # warm up torch.func
    for every in (1, 2, 5, 10):
        t_pkg, lam = best_time(lambda e=every: package(params, xs, e, transient), args.repeats)
        t_ag, lam_ag = best_time(
            lambda e=every: autograd_reference(params, xs, e, transient), max(1, args.repeats - 2)
        )
        t_fl, _ = best_time(lambda e=every: floor(B, H, T, e, torch.float32), args.repeats)
        err = float((lam.double() - ref64).abs().max())
        agree = float((lam.double() - lam_ag.double()).abs().max())
        print(
            f"{every:>7} {t_pkg:>10.3f} {t_ag:>11.3f} {t_fl:>8.3f} {t_ag / t_pkg:>12.2f} "
            f"{t_pkg / t_fl:>9.2f} {err:>10.2e} {'yes' if err <= 1e-3 else 'no':>7}"
            f"   (package vs autograd {agree:.1e})"
        )
    rss = []
    for steps in (T, 8 * T):
        cmd = [
            sys.executable,
            __file__,
            "--memory-probe",
            str(steps),
            "--hidden",
            str(H),
            "--batch",
            str(B),
            "--weight-scale",
            str(args.weight_scale),
            "--gamma",
            str(args.gamma),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rss.append(float(out.strip().splitlines()[-1]))
    print(f"peak RSS: T = {T}: {rss[0]:.0f} MiB, T = {8 * T}: {rss[1]:.0f} MiB (streaming)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
