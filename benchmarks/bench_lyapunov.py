"""Full Lyapunov spectrum of an NRNN: package vs per-step ``jacrev`` + QR vs the floor.

Workload: the full spectrum (k = H = 128) of a float32 NRNN driven by B = 16 input
sequences of length T = 784 (pixel-MNIST shaped), transient T // 10.

* **package**: :func:`nrnn_theory.lyapunov_spectrum` with its defaults
  (``reortho_every="auto"``, ``qr="auto"``), and with the classical settings
  (``reortho_every=1``, Householder), and with CholeskyQR2 forced;
* **reference** (what a user would otherwise run): per-step Jacobians from
  ``torch.func.vmap(torch.func.jacrev(step))``, the frame multiplied by them and a
  sign-corrected Householder QR every step; also the same with the QR only as often
  as the package's adaptive schedule did (same number of QRs), to isolate what the
  analytic tangents buy;
* **floor**: the arithmetic that cannot be avoided, the tangent-map products
  (T batched (H x H) @ (H x k) products, ``matmul_flops``) plus the QRs actually done
  (``qr_flops``, Householder count), divided by the GFLOP/s this machine measures now
  for the same batched product (``measured_gflops``).

Accuracy: every variant's maximum error against a float64, every-step Householder run
(the float32 rounding of the trajectory alone is ~4e-6 here); "equal accuracy" means
within 1e-4 of each other. Timings are interleaved rounds with medians of per-round
ratios (``benchmarks/_timing.py``). ``--profile`` prints where the package's time goes;
a memory check runs the package in two child processes at T and 8T (streaming).

Model: a Lipschitz-RNN parametrization (beta = 0.75, gamma = ``--gamma`` (1e-3), dt =
0.1, free matrices with std ``--weight-scale / sqrt(H)``), inputs uniform in [0, 1],
D = 1. ``--weight-scale 4 --gamma 4`` gives a dissipative model with a wide spectrum
(about [-14.8, 0]) where the schedule must keep blocks short.

Run: ``python benchmarks/bench_lyapunov.py`` (``--quick`` for a seconds-long smoke run,
``--threads 1`` for the single-thread figures).
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys

import torch
from _timing import (
    compare,
    floor_seconds,
    machine_line,
    matmul_flops,
    measured_gflops,
    qr_flops,
    report,
)

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


def package(params, xs, transient: int, **options):
    return lyapunov_spectrum(
        params, xs, transient=transient, generator=torch.Generator().manual_seed(0), **options
    )


def jacrev_reference(params, xs, transient: int, every: int = 1) -> torch.Tensor:
    """Per-step ``vmap(jacrev)`` Jacobians, the frame product and a QR every ``every`` steps."""
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
    with torch.no_grad():
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


def count_qrs(T: int, transient: int, every: int) -> int:
    """QRs of the fixed schedule: every ``every`` steps, and at the transient's and run's end."""
    count = since = 0
    for t in range(1, T + 1):
        since += 1
        if since == every or t == transient or t == T:
            count, since = count + 1, 0
    return count


def floor_flops(B: int, H: int, k: int, T: int, n_qr: int) -> float:
    """Tangent-map products of every step plus the QRs done (Householder count)."""
    return T * matmul_flops(H, H, k, batch=B) + n_qr * qr_flops(H, k, batch=B)


def memory_probe(H: int, B: int, T: int, weight_scale: float, gamma: float) -> None:
    """Child-process entry: run the package once and print peak RSS (MiB).

    Memory depends only on the shapes; gamma >= 1 keeps the state finite over 8T steps.
    """
    params = model(H, torch.float32, 0, weight_scale, max(gamma, 1.0))
    package(params, inputs(B, T, torch.float32, 0), T // 10)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def profile_package(params, xs, transient: int) -> None:
    from torch.profiler import profile

    package(params, xs[:, :32], 4)
    with profile() as prof:
        package(params, xs, transient)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--hidden", type=int, default=128, help="H (= k, full spectrum)")
    parser.add_argument("--steps", type=int, default=784, help="sequence length T")
    parser.add_argument("--batch", type=int, default=16, help="trajectories B")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--weight-scale", type=float, default=1.0, help="std * sqrt(H)")
    parser.add_argument("--gamma", type=float, default=1e-3, help="gamma_A = gamma_W")
    parser.add_argument("--profile", action="store_true", help="profile one package run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory check")
    parser.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.steps, args.batch, args.rounds = 32, 64, 4, 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        memory_probe(args.hidden, args.batch, args.memory_probe, args.weight_scale, args.gamma)
        return 0
    H, T, B = args.hidden, args.steps, args.batch
    k, transient = H, T // 10
    print(machine_line())
    print(
        f"Lyapunov spectrum, k = H = {H}, T = {T}, B = {B}, float32, transient {transient}, "
        f"weight scale {args.weight_scale}, gamma {args.gamma}"
    )
    params = model(H, torch.float32, 0, args.weight_scale, args.gamma)
    xs = inputs(B, T, torch.float32, 0)
    truth = package(
        params.to(torch.float64), xs.to(torch.float64), transient, reortho_every=1, qr="householder"
    ).exponents
    print(f"float64 every-step spectrum: top {truth[0]:.4f}, bottom {truth[-1]:.4f} per unit time")
    if args.profile:
        profile_package(params, xs, transient)

    variants = {
        "package (auto, qr auto)": {},
        "package (every 1, householder)": {"reortho_every": 1, "qr": "householder"},
        "package (auto, cholesky)": {"qr": "cholesky"},
    }
    specs = {name: package(params, xs, transient, **opt) for name, opt in variants.items()}
    auto = specs["package (auto, qr auto)"]
    n_qr = {name: s.n_reortho for name, s in specs.items()}
    every = max(1, round(T / auto.n_reortho))
    refs = {
        "jacrev + QR every step": 1,
        f"jacrev + QR every {every} (as many QRs)": every,
    }
    fns = {
        name: (lambda o=opt: package(params, xs, transient, **o)) for name, opt in variants.items()
    }
    fns.update(
        {name: (lambda e=e: jacrev_reference(params, xs, transient, e)) for name, e in refs.items()}
    )
    errors = {name: float((s.exponents.double() - truth).abs().max()) for name, s in specs.items()}
    for name, e in refs.items():
        errors[name] = float(
            (jacrev_reference(params, xs, transient, e).double() - truth).abs().max()
        )
        n_qr[name] = count_qrs(T, transient, e)
    print(f"timing {len(fns)} variants in {args.rounds} interleaved rounds ...")
    cmp = compare(fns, rounds=args.rounds, warmup=0)  # every variant ran once above
    gflops = measured_gflops((H, H, k), batch=B)
    print(
        f"measured batched matmul rate ({B} x ({H}x{H})@({H}x{k}), float32): {gflops:.1f} GFLOP/s"
    )

    ref_name = "jacrev + QR every step"
    rows = []
    for name in fns:
        fl = floor_seconds(floor_flops(B, H, k, T, n_qr[name]), gflops)
        ref = cmp.times[ref_name] if name.startswith("package") else None
        rows.append((name, cmp.times[name], ref, fl))
    print(report(rows))
    print()
    head = "time / package (auto), median over rounds"
    print(f"{'variant':<40} {'QRs':>5} {'max |err|':>10} {head:>42}")
    base = "package (auto, qr auto)"
    for name in fns:
        ratio = "1.00x" if name == base else f"{cmp.ratios[f'{name}/{base}']:.2f}x"
        print(f"{name:<40} {n_qr[name]:>5} {errors[name]:>10.2e} {ratio:>42}")
    flops_products = T * matmul_flops(H, H, k, batch=B)
    print(
        f"\npackage (auto): {auto.qr} QR, {auto.n_reortho} QRs ({auto.n_fallback} fell back), "
        f"products {flops_products / 1e9:.1f} GFLOP + QRs "
        f"{auto.n_reortho * qr_flops(H, k, batch=B) / 1e9:.2f} GFLOP; "
        f"equal accuracy (|err_pkg - err_ref| <= 1e-4): "
        f"{'yes' if abs(errors[base] - errors[ref_name]) <= 1e-4 else 'no'}"
    )
    if not args.no_memory:
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
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rss.append(float(out.strip().splitlines()[-1]))
        print(f"peak RSS: T = {T}: {rss[0]:.0f} MiB, T = {8 * T}: {rss[1]:.0f} MiB (streaming)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
