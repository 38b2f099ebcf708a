"""Hutchinson Hessian trace: vmap-batched probes against a probe-at-a-time loop.

The package's :func:`nrnn_theory.estimate_hessian_trace` processes Rademacher probes
in batches: by default through the forward second-order pass of the NRNN loss
(``--method auto``), or by Hessian-vector products batched with ``torch.func.vmap``
(``--method reverse_over_reverse`` / ``forward_over_reverse``). The reference is the
approach of common Hessian tools (PyHessian's ``trace``): build the gradient once with
``torch.autograd.grad(create_graph=True)``, then one double-backward
``torch.autograd.grad`` per probe. Both see the same probes (same generator seed), so
the two estimates must agree to rounding, and both report a standard error.

Model: a digits-sized NRNN (H = 64, T = 64, D = 1, C = 10) on a few hundred UCI
digits (pixel sequences), Lipschitz-RNN initialisation, optionally trained for a few
full-batch Adam steps first. Prints the package's time, the reference's and the ratio.

Run: ``python benchmarks/bench_flatness.py`` (``--quick`` for a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from nrnn_theory import NRNNParams, estimate_hessian_trace, nrnn_loss, params_to_vector


def digits(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` UCI digits as pixel sequences (n, 64, 1) in [0, 1], labels (n,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    xs = torch.as_tensor(data.data[:n], dtype=dtype).reshape(n, 64, 1) / 16.0
    return xs, torch.as_tensor(data.target[:n], dtype=torch.long)


def model(H: int, D: int, C: int, dtype: torch.dtype, seed: int) -> NRNNParams:
    """Lipschitz-RNN initialisation of the authors' code (THEORY.md §3)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return std * torch.randn(*shape, generator=g, dtype=dtype)

    return NRNNParams.from_lipschitz(
        randn(H, H, std=1.0 / H),
        randn(H, H, std=1.0 / H),
        randn(H, D, std=1.0 / math.sqrt(D)),
        torch.zeros(H, dtype=dtype),
        randn(C, H, std=1.0 / math.sqrt(H)),
        torch.zeros(C, dtype=dtype),
        beta=0.75,
        gamma_A=1e-3,
        gamma_W=1e-3,
        dt=0.1,
    )


def train(params: NRNNParams, xs, labels, steps: int, lr: float) -> NRNNParams:
    """A few full-batch Adam steps with torch.func gradients (no module, no .grad)."""
    if steps == 0:
        return params
    loss_fn, theta = nrnn_loss(params, xs, labels)
    grad_fn = torch.func.grad_and_value(loss_fn)
    m = {k: torch.zeros_like(v) for k, v in theta.items()}
    v = {k: torch.zeros_like(t) for k, t in theta.items()}
    b1, b2 = 0.9, 0.999
    for t in range(1, steps + 1):
        grads, _ = grad_fn(theta)
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            step = lr * (m[k] / (1 - b1**t)) / ((v[k] / (1 - b2**t)).sqrt() + 1e-8)
            theta[k] = theta[k] - step
    return params.replace(**theta)


def reference_trace(loss_fn, theta, n_probes: int, seed: int):
    """Probe-at-a-time Hutchinson with double backward (the common Hessian-tool loop)."""
    leaves = {k: t.detach().clone().requires_grad_(True) for k, t in theta.items()}
    names = list(leaves)
    n = sum(t.numel() for t in leaves.values())
    gen = torch.Generator().manual_seed(seed)
    loss = loss_fn(leaves)
    grads = torch.autograd.grad(loss, [leaves[k] for k in names], create_graph=True)
    samples = []
    for _ in range(n_probes):
        # Same draws, in the same order, as estimate_hessian_trace with batch_size=1.
        z = (2 * torch.randint(0, 2, (1, n), generator=gen) - 1).to(loss.dtype)[0]
        zs, start = [], 0
        for k in names:
            size = leaves[k].numel()
            zs.append(z[start : start + size].reshape(leaves[k].shape))
            start += size
        hz = torch.autograd.grad(grads, [leaves[k] for k in names], zs, retain_graph=True)
        samples.append(sum((a * b).sum() for a, b in zip(hz, zs, strict=True)).item())
    s = torch.tensor(samples, dtype=torch.float64)
    return float(s.mean()), float(s.std() / math.sqrt(len(s)))


def timed(fn, repeats: int):
    """Best wall-clock and best process CPU time over ``repeats`` runs, and the output.

    CPU time is reported too because the build machines are shared: waiting for a core
    inflates wall-clock time but not the work done.
    """
    best_wall, best_cpu, out = math.inf, math.inf, None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return (best_wall, best_cpu), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--hidden", type=int, default=64, help="H (default 64)")
    parser.add_argument("--examples", type=int, default=256, help="digits used (default 256)")
    parser.add_argument("--probes", type=int, default=100, help="probes (default 100)")
    parser.add_argument("--batch-size", type=int, default=10, help="probes per batch (10)")
    parser.add_argument(
        "--method",
        default="auto",
        choices=["auto", "quadratic_form", "reverse_over_reverse", "forward_over_reverse"],
        help="how the package computes z^T H z (default auto: the forward quadratic form)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--train-steps", type=int, default=30, help="Adam steps (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, best kept (3)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.examples, args.probes = 16, 32, 10
        args.train_steps, args.repeats = 2, 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    xs, labels = digits(args.examples, dtype)
    params = model(args.hidden, 1, 10, dtype, args.seed)
    params = train(params, xs, labels, args.train_steps, lr=1e-2)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    n = params_to_vector(theta).numel()
    print(
        f"digits NRNN: H={args.hidden} T=64 B={args.examples} n={n} {args.dtype} "
        f"threads={torch.get_num_threads()} probes={args.probes} batch={args.batch_size} "
        f"method={args.method} loss={float(loss_fn(theta)):.4f} "
        f"load={os.getloadavg()[0]:.1f}"
    )

    def package():
        return estimate_hessian_trace(
            loss_fn,
            theta,
            n_probes=args.probes,
            batch_size=args.batch_size,
            method=args.method,
            generator=torch.Generator().manual_seed(args.seed + 1),
        )

    t_pkg, est = timed(package, args.repeats)
    t_ref, (ref_mean, ref_se) = timed(
        lambda: reference_trace(loss_fn, theta, args.probes, args.seed + 1), args.repeats
    )
    print(
        f"package   (batched): wall {t_pkg[0]:8.3f} s  cpu {t_pkg[1]:8.3f} s   "
        f"trace = {est.mean:.6g} +- {est.stderr:.3g}"
    )
    print(
        f"reference (loop)   : wall {t_ref[0]:8.3f} s  cpu {t_ref[1]:8.3f} s   "
        f"trace = {ref_mean:.6g} +- {ref_se:.3g}"
    )
    print(
        f"speed-up at {args.probes} probes: {t_ref[0] / t_pkg[0]:.2f}x wall, "
        f"{t_ref[1] / t_pkg[1]:.2f}x cpu"
    )
    diff = abs(est.mean - ref_mean)
    print(f"|difference| = {diff:.3g} ({diff / max(est.stderr, 1e-300):.2g} standard errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
