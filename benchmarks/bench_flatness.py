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
full-batch Adam steps first.

Times (``benchmarks/_timing.py``): package and reference in interleaved rounds, the
median of per-round ratios. The **floor** is the arithmetic of the cheapest of the two
algorithms, the forward second-order pass: per step, one forward product
(B, H) @ (H, 2H) per batch of probes, and for each probe eight (B, H) @ (H, H)
products (first- and second-order tangents through W and A, and the parameter
directions dW, dA applied to h and its tangent), divided by the GFLOP/s this machine
measures now for those products. (A Hessian-vector product by double backward costs
about twelve such products per step and probe.) ``--profile`` shows where the
package's time goes.

Run: ``python benchmarks/bench_flatness.py`` (``--quick`` for a seconds-long smoke run,
``--threads 1`` for the single-thread figures).
"""

from __future__ import annotations

import argparse
import math

import torch
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report

from nrnn_theory import NRNNParams, estimate_hessian_trace, nrnn_loss, params_to_vector


def digits(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` UCI digits as pixel sequences (n, 64, 1) in [0, 1], labels (n,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    xs = torch.as_tensor(data.data[:n], dtype=dtype).reshape(n, 64, 1) / 16.0
    return xs, torch.as_tensor(data.target[:n], dtype=torch.long)


def model(H: int, D: int, C: int, dtype: torch.dtype, seed: int) -> NRNNParams:
    """Lipschitz-RNN initialisation of the authors' code (docs/theory/conventions.md)."""
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


def floor_flops(T: int, B: int, H: int, n_probes: int, batch: int) -> float:
    """Matrix-product FLOPs of the forward second-order pass (see the module docstring)."""
    n_batches = math.ceil(n_probes / batch)
    return T * (n_batches * matmul_flops(B, H, 2 * H) + n_probes * 8 * matmul_flops(B, H, H))


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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (3)")
    parser.add_argument("--profile", action="store_true", help="profile one package run")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.examples, args.probes = 16, 32, 10
        args.train_steps, args.rounds = 2, 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    xs, labels = digits(args.examples, dtype)
    params = model(args.hidden, 1, 10, dtype, args.seed)
    params = train(params, xs, labels, args.train_steps, lr=1e-2)
    loss_fn, theta = nrnn_loss(params, xs, labels)
    n = params_to_vector(theta).numel()
    print(machine_line())
    print(
        f"digits NRNN: H={args.hidden} T=64 B={args.examples} n={n} {args.dtype} "
        f"probes={args.probes} batch={args.batch_size} method={args.method} "
        f"loss={float(loss_fn(theta)):.4f}"
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

    def reference():
        return reference_trace(loss_fn, theta, args.probes, args.seed + 1)

    est = package()
    ref_mean, ref_se = reference()
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            package()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    cmp = compare({"package": package, "reference": reference}, rounds=args.rounds, warmup=0)
    B, H, P = args.examples, args.hidden, args.batch_size
    gflops = measured_gflops([(B, H, H)], batch=P, dtype=dtype)
    flops = floor_flops(64, B, H, args.probes, P)
    fl = floor_seconds(flops, gflops)
    print(
        f"floor: {flops / 1e9:.3f} GFLOP at {gflops:.1f} GFLOP/s ({P} x ({B}x{H})@({H}x{H}), "
        f"{args.dtype}) = {fl:.4f} s"
    )
    print(
        report(
            [
                (f"package ({args.method}, batch {P})", cmp.times["package"],
                 cmp.times["reference"], fl),
                ("reference (probe loop)", cmp.times["reference"], None, fl),
            ]
        )
    )  # fmt: skip
    print(
        f"reference/package, median of {args.rounds} per-round ratios: "
        f"{cmp.ratios['reference/package']:.2f}x"
    )
    print(f"package   trace = {est.mean:.6g} +- {est.stderr:.3g}")
    print(f"reference trace = {ref_mean:.6g} +- {ref_se:.3g}")
    diff = abs(est.mean - ref_mean)
    print(f"|difference| = {diff:.3g} ({diff / max(est.stderr, 1e-300):.2g} standard errors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
