"""Benchmark: the exact small-noise regularizer against Monte Carlo (docs/theory/regularizer.md).

A digits-sized NRNN (H = 64, T = 64 pixel steps, D = 1) is trained here for a few
seconds on scikit-learn's 8x8 digits with injected noise; then, on 256 held-out
examples, the script times and prints, each with the reference and the ratio:

1. the exact per-example regularizer (``explicit_regularizer``, forward recursion)
   against plain antithetic Monte Carlo (``estimate_noise_gap(control_variate=False)``)
   run until every example's estimate has a relative standard error <= 5%
   (target >= 10x); the same with the control variate, for information;
2. the batch-mean gap: Monte Carlo to 5% relative standard error of the batch mean
   (at small noise this can take a handful of pairs; no target, reported as is);
3. the gradient of the exact penalty with respect to the parameters against the
   gradient of a Monte Carlo estimate of the batch-mean gap with the same 5% error;
4. the forward recursion against the naive O(M^2) product-of-Jacobians formula at
   M = 784 (target >= 10x);
5. the pathwise estimate (the training penalty's default estimator, unbiased, O(M H^2)
   per example) against the exact forward recursion, value and gradient of the
   batch-mean gap, in interleaved rounds, with the estimate's error against the exact
   value in standard errors.

Every comparison prints the package's time, the reference's, the arithmetic floor (the
matmul FLOPs of the package's computation divided by the GFLOP/s this machine measures
now for the same shapes, ``_timing.measured_gflops``) and both ratios; a table at the
end collects them. Run ``python benchmarks/bench_regularizer.py`` (``--quick`` for a
seconds-long smoke run). Nothing is cached on disk.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report

from nrnn_theory import (
    NoiseSpec,
    NRNNParams,
    estimate_noise_gap,
    explicit_regularizer,
    rollout,
    sample_noise,
)


_CLOCK = time.perf_counter


def _timed(fn, repeat: int = 1):
    """Best time of ``repeat`` calls (wall, or CPU with ``--cpu-time``) and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t = _CLOCK()
        out = fn()
        best = min(best, _CLOCK() - t)
    return best, out


def exact_floor(B: int, M: int, H: int, *, grad: bool, window: float) -> tuple[float, float, float]:
    """(seconds, FLOPs, GFLOP/s) of the forward recursion's products on B examples.

    Per step and example: J Sigma, (J Sigma) J^T and Sigma W^T, three H x H products
    (batched over the examples); the backward pass of a gradient doubles them.
    """
    flops = M * 3 * matmul_flops(H, H, H, batch=B) * (3 if grad else 1)
    rate = measured_gflops((H, H, H), batch=B, seconds=window)
    return floor_seconds(flops, rate), flops, rate


def pathwise_floor(B: int, M: int, H: int, *, grad: bool, window: float):
    """(seconds, FLOPs, GFLOP/s) of the pathwise estimate's products (one probe).

    Per step: the reference chain, its bulk product, the h1 and lambda recursions, each
    a (B, H) @ (H, 2H) product; the backward pass doubles them.
    """
    flops = M * 4 * matmul_flops(B, H, 2 * H) * (3 if grad else 1)
    rate = measured_gflops((B, H, 2 * H), seconds=window)
    return floor_seconds(flops, rate), flops, rate


def _digits(n_eval: int, generator: torch.Generator):
    from sklearn.datasets import load_digits

    d = load_digits()
    xs = torch.tensor(d.data / 16.0, dtype=torch.float32).unsqueeze(-1)  # (N, 64, 1)
    ys = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(ys), generator=generator)
    xs, ys = xs[perm], ys[perm]
    return (xs[n_eval:], ys[n_eval:]), (xs[:n_eval], ys[:n_eval])


def _build(theta: dict, dt: float) -> NRNNParams:
    return NRNNParams.from_lipschitz(
        theta["M_A"], theta["M_W"], theta["U"], theta["b"], theta["V"], theta["c"],
        beta=0.75, gamma_A=1e-3, gamma_W=1e-3, dt=dt,
    )  # fmt: skip


def train(train_set, *, H: int, epochs: int, noise: NoiseSpec, generator, dt: float = 0.1):
    """A short Adam loop on NRNNParams tensors (the training layer is not used here)."""
    xs, ys = train_set
    C = 10
    theta = {
        "M_A": torch.randn(H, H, generator=generator) * (0.1 / H),
        "M_W": torch.randn(H, H, generator=generator) * (0.1 / H),
        "U": torch.randn(H, 1, generator=generator),
        "b": torch.zeros(H),
        "V": torch.randn(C, H, generator=generator) / math.sqrt(H),
        "c": torch.zeros(C),
    }
    for t in theta.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(theta.values(), lr=1e-2)
    for _ in range(epochs):
        perm = torch.randperm(len(ys), generator=generator)
        for idx in perm.split(128):
            params = _build(theta, dt)
            h = rollout(params, xs[idx], noise=noise, generator=generator)
            loss = F.cross_entropy(h @ params.V.mT + params.c, ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return _build({k: v.detach() for k, v in theta.items()}, dt)


def _accuracy(params, data) -> float:
    xs, ys = data
    with torch.no_grad():
        h = rollout(params, xs)
        return float(((h @ params.V.mT + params.c).argmax(-1) == ys).float().mean())


def _mc_gap_objective(theta_params: NRNNParams, xs, ys, noise, eta):
    """Plain antithetic Monte Carlo of the batch-mean gap on fixed draws (differentiable)."""
    n = eta.shape[0] // xs.shape[0]
    xr = xs.repeat(n, 1, 1)
    yr = ys.repeat(n)
    V, c = theta_params.V, theta_params.c
    lp = F.cross_entropy(rollout(theta_params, xr, noise=noise, eta=eta) @ V.mT + c, yr)
    lm = F.cross_entropy(rollout(theta_params, xr, noise=noise, eta=-eta) @ V.mT + c, yr)
    l0 = F.cross_entropy(rollout(theta_params, xs) @ V.mT + c, ys)
    return 0.5 * (lp + lm) - l0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rse", type=float, default=0.05, help="target relative std. error")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds")
    args = parser.parse_args(argv)
    if args.cpu_time:
        import types

        import _timing

        global _CLOCK
        _CLOCK = time.process_time
        _timing.time = types.SimpleNamespace(perf_counter=time.process_time)
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    H = 16 if args.quick else 64
    n_eval = 16 if args.quick else 256
    epochs = 1 if args.quick else 15
    train_noise = NoiseSpec(epsilon=0.05, sigma1=1.0, sigma2=0.5)  # sde, diagonal
    # Evaluated at a smaller level: the trained model is strongly curved (|Q + R| up to
    # ~100 on some examples), and at eps = 0.05 the O(eps^4) remainder is resolved by
    # 2000 pairs on ~10% of the examples; at 0.025 it is below the Monte Carlo error.
    noise = train_noise.scaled(0.025)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"training noise {train_noise}; evaluated at epsilon = {noise.epsilon}")

    print(machine_line())
    window = 0.1 if args.quick else 0.3
    rows = []
    train_set, eval_set = _digits(n_eval, g)
    t_train, params = _timed(
        lambda: train(train_set, H=H, epochs=epochs, noise=train_noise, generator=g)
    )
    acc = _accuracy(params, eval_set)
    print(
        f"trained H={H}, T=64 for {epochs} epochs in {t_train:.1f} s; held-out accuracy {acc:.3f}"
    )
    xs, ys = eval_set

    # 1. exact per-example regularizer vs antithetic Monte Carlo at 5% RSE per example
    reps = 1 if args.quick else 3
    t_exact, exact = _timed(lambda: explicit_regularizer(params, xs, ys, noise), reps)
    pilot_n = 8 if args.quick else 200
    pilot = estimate_noise_gap(
        params, xs, ys, noise, n_pairs=pilot_n, generator=g, control_variate=False
    )
    t_pilot, pilot_cv = _timed(
        lambda: estimate_noise_gap(params, xs, ys, noise, n_pairs=pilot_n, generator=g)
    )
    rse_each = pilot.plain_stderr / pilot.plain_gap.abs()
    need_each = (pilot_n * (rse_each / args.rse) ** 2).ceil()
    need_plain = int(need_each.max())
    rse_cv = (pilot_cv.stderr / pilot_cv.gap.abs()).max().item()
    need_cv = max(2, math.ceil(pilot_n * (rse_cv / args.rse) ** 2))
    cap = 8 if args.quick else 2000
    n_run = min(need_plain, cap)
    t_run, est = _timed(
        lambda: estimate_noise_gap(
            params, xs, ys, noise, n_pairs=n_run, generator=g, control_variate=False
        )
    )
    t_mc = t_run / n_run * need_plain
    achieved = (est.plain_stderr / est.plain_gap.abs()).max().item()
    note = "" if n_run == need_plain else f" (ran {n_run} pairs, extrapolated linearly)"
    print(f"\n[1] per-example gap, every example at <= {args.rse:.0%} relative standard error")
    print(
        f"    exact explicit_regularizer (forward): {t_exact:.3f} s "
        f"(mean Q+R {exact.total.mean():.4g}, eps^2/2 (Q+R) {exact.noise_gap.mean():.3g})"
    )
    print(
        f"    antithetic MC, plain: {need_plain} pairs x {n_eval} examples "
        f"-> {t_mc:.2f} s{note}; worst RSE at {n_run} pairs {achieved:.3f}"
    )
    print(
        f"    (pairs needed per example, from a {pilot_n}-pair pilot: median "
        f"{need_each.median():.0f}, 90th percentile {need_each.quantile(0.9):.0f}, "
        f"max {need_plain})"
    )
    print(f"    ratio MC / exact: {t_mc / t_exact:.1f}x (target >= 10x)")
    fl, fl_flops, fl_rate = exact_floor(n_eval, xs.shape[1], H, grad=False, window=window)
    print(f"    floor of the exact recursion: {fl_flops / 1e9:.2f} GFLOP at {fl_rate:.1f} "
          f"GFLOP/s (batched {H} x {H} products) = {fl:.3f} s; exact/floor "
          f"{t_exact / fl:.2f}x")  # fmt: skip
    rows.append(("[1] exact vs plain MC (5% RSE)", t_exact, t_mc, fl))
    t_med = t_run / n_run * float(need_each.median())
    print(
        f"    (if only the median example had to reach {args.rse:.0%}: {t_med:.2f} s, "
        f"ratio {t_med / t_exact:.1f}x)"
    )
    t_cv = t_pilot / pilot_n * need_cv
    print(
        f"    MC with the control variate: {need_cv} pairs -> {t_cv:.2f} s "
        f"({t_cv / t_exact:.2f}x the exact time; it also needs the exact term)"
    )
    diff = (est.plain_gap - exact.noise_gap).abs()
    within = float((diff <= 4 * est.plain_stderr).float().mean())
    print(
        f"    |MC - exact| / exact: median {(diff / exact.noise_gap.abs()).median():.3f}; "
        f"within 4 SE on {within:.0%} of examples"
    )

    # 2. batch mean
    rse_mean = pilot.plain_mean_stderr / abs(pilot.plain_mean)
    need_mean = max(2, math.ceil(pilot_n * (rse_mean / args.rse) ** 2))
    t_mean, est_mean = _timed(
        lambda: estimate_noise_gap(
            params, xs, ys, noise, n_pairs=need_mean, generator=g, control_variate=False
        )
    )
    achieved_mean = est_mean.plain_mean_stderr / abs(est_mean.plain_mean)
    print(f"\n[2] batch-mean gap at <= {args.rse:.0%} relative standard error")
    print(
        f"    exact: {t_exact:.3f} s; antithetic MC: {need_mean} pairs -> {t_mean:.3f} s "
        f"(achieved RSE {achieved_mean:.3f}); ratio MC / exact {t_mean / t_exact:.2f}x "
        "(no target)"
    )

    # 3. gradients
    keys = ["A", "W", "U", "b", "V", "c"]
    theta = {k: getattr(params, k) for k in keys}

    def exact_obj(t):
        return explicit_regularizer(params.replace(**t), xs, ys, noise).noise_gap.mean()

    t_gex, g_exact = _timed(lambda: torch.func.grad(exact_obj)(theta), reps)
    eta = sample_noise(noise, need_mean * n_eval, xs.shape[1], H, generator=g)

    def mc_obj(t):
        return _mc_gap_objective(params.replace(**t), xs, ys, noise, eta)

    t_gmc, g_mc = _timed(lambda: torch.func.grad(mc_obj)(theta), reps)
    num = math.sqrt(sum(float(((g_mc[k] - g_exact[k]) ** 2).sum()) for k in keys))
    den = math.sqrt(sum(float((g_exact[k] ** 2).sum()) for k in keys))
    print("\n[3] gradient w.r.t. (A, W, U, b, V, c) of the batch-mean gap")
    print(
        f"    exact: {t_gex:.3f} s; MC on {need_mean} pairs (5% RSE on the value): "
        f"{t_gmc:.3f} s; ratio MC / exact {t_gmc / t_gex:.2f}x"
    )
    print(f"    relative error of that MC gradient against the exact one: {num / den:.2f}")
    fl_g, _, _ = exact_floor(n_eval, xs.shape[1], H, grad=True, window=window)
    rows.append(("[3] gradient: exact vs MC", t_gex, t_gmc, fl_g))

    # 4. forward recursion vs naive O(M^2) formula
    M = 48 if args.quick else 784
    gl = torch.Generator().manual_seed(args.seed + 1)
    p64 = params.to(torch.float64)
    x_long = torch.rand(1, M, 1, generator=gl, dtype=torch.float64)
    y_long = torch.tensor([3])
    t_fw, fw = _timed(lambda: explicit_regularizer(p64, x_long, y_long, noise), reps)
    t_nv, nv = _timed(lambda: explicit_regularizer(p64, x_long, y_long, noise, method="naive"))
    agree = abs(float(fw.total[0] - nv.total[0])) / abs(float(fw.total[0]))
    print(f"\n[4] one sequence of M = {M} steps, H = {H}, float64")
    print(
        f"    forward recursion: {t_fw:.3f} s; naive O(M^2) formula: {t_nv:.2f} s; "
        f"ratio {t_nv / t_fw:.0f}x (target >= 10x); relative difference {agree:.1e}"
    )
    rows.append(("[4] forward vs naive O(M^2)", t_fw, t_nv, math.nan))

    # 5. pathwise estimate (the training penalty's default) vs the exact recursion
    from nrnn_theory._pathwise import draw_probes, pathwise_noise_gap

    probes_n = 4 if args.quick else 16
    theta5 = {k: getattr(params, k).detach().clone().requires_grad_() for k in keys}
    p5 = params.replace(**theta5)
    g5 = torch.Generator().manual_seed(args.seed + 5)

    def pathwise_grad():
        pr = draw_probes(
            noise, H, xs.shape[1], 1, n_eval, dtype=xs.dtype, device="cpu", generator=g5
        )
        v = pathwise_noise_gap(p5, xs, ys, noise, pr).mean()
        return torch.autograd.grad(v, list(theta5.values()))

    def exact_grad():
        v = explicit_regularizer(p5, xs, ys, noise).noise_gap.mean()
        return torch.autograd.grad(v, list(theta5.values()))

    cmp = compare({"pathwise": pathwise_grad, "exact": exact_grad}, rounds=2 if args.quick else 5)
    pr = draw_probes(
        noise, H, xs.shape[1], probes_n, n_eval, dtype=xs.dtype, device="cpu", generator=g5
    )
    with torch.no_grad():
        each = torch.stack(
            [pathwise_noise_gap(params, xs, ys, noise, q).mean() for q in pr.split(1, dim=1)]
        )
    est, se = float(each.mean()), float(each.std() / math.sqrt(probes_n))
    ex = float(exact.noise_gap.mean())
    fl5, fl5_flops, fl5_rate = pathwise_floor(n_eval, xs.shape[1], H, grad=True, window=window)
    print(f"\n[5] value and gradient of the batch-mean gap, one probe per example, "
          f"{cmp.rounds} interleaved rounds")  # fmt: skip
    print(f"    pathwise: {cmp.times['pathwise']:.3f} s; exact: {cmp.times['exact']:.3f} s; "
          f"exact / pathwise {cmp.ratios['exact/pathwise']:.1f}x")  # fmt: skip
    print(f"    floor of the pathwise estimate: {fl5_flops / 1e9:.2f} GFLOP at "
          f"{fl5_rate:.1f} GFLOP/s = {fl5:.3f} s; pathwise/floor "
          f"{cmp.times['pathwise'] / fl5:.2f}x")  # fmt: skip
    print(f"    batch mean over {probes_n} probes {est:.4g} +- {se:.2g} (1 SE), exact {ex:.4g}: "
          f"{abs(est - ex) / se:.1f} SE apart; one probe's relative SE on the batch mean "
          f"{float(each.std()) / abs(ex):.2f}")  # fmt: skip
    rows.append(("[5] gradient: pathwise vs exact", cmp.times["pathwise"], cmp.times["exact"], fl5))

    print("\nsummary (package = the exact regularizer in [1]-[4], the pathwise one in [5]; "
          "floor nan where not computed)")  # fmt: skip
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
