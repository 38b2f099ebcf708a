"""Euler-Maruyama forward + backward: the package's rollout against torchsde (issue 18).

One NRNN SDE (docs/theory/model.md, conventions.md, ``convention="sde"``, diagonal noise
:math:`\\epsilon(\\sigma_1 + \\sigma_2 h)\\,dB`) integrated by Euler-Maruyama over the same
Brownian path, then a cross-entropy loss of the final state and its gradient in
(A, W, U, b, V, c):

* **package**: :func:`nrnn_theory.rollout` with ``eta`` = the path's increments / sqrt(dt)
  (the fused recurrence and its hand-written backward);
* **reference**: ``torchsde.sdeint(method="euler")`` on a ``BrownianInterval`` built
  with ``dt`` (without it every query is slow; docs/environment.md, *Test-only
  oracles*), with a drift and a diffusion written as batched tensor expressions (the
  input projection computed once and iterated with ``unbind``, so the reference does
  not pay the indexing pitfall of docs/environment.md, *The time-loop pitfall*),
  differentiated by autograd;
* **floor**: the matmul FLOPs of the step divided by the GFLOP/s this machine measures
  now for the same shapes.

Both must give the same result: the script checks that the final states and the
gradients agree (float32, relative 1e-4 on the states, 1e-3 on the gradients) before it
prints the timings. dt is a power of two so that torchsde's time grid is exact.
``--profile`` prints, after the timing table, ``torch.profiler``'s self-CPU breakdown by
operator of one package run and of one torchsde run (both warm).
Target (issue 18): package >= 3x faster than torchsde. ``torchsde`` is in the test
extra (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import argparse
import math
import types

import torch
import torch.nn.functional as F
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report


def problem(B: int, T: int, H: int, D: int, C: int, seed: int = 0):
    from nrnn_theory import NoiseSpec, NRNNParams

    g = torch.Generator().manual_seed(seed)
    dt = 2.0**-7
    params = NRNNParams.from_lipschitz(
        torch.randn(H, H, generator=g) * 0.1 / H,
        torch.randn(H, H, generator=g) * 0.1 / H,
        torch.randn(H, D, generator=g),
        torch.zeros(H),
        torch.randn(C, H, generator=g) / math.sqrt(H),
        torch.zeros(C),
        beta=0.75, gamma_A=1e-3, gamma_W=1e-3, dt=dt,
    )  # fmt: skip
    noise = NoiseSpec(epsilon=0.5, sigma1=1.0, sigma2=0.5)  # diagonal
    xs = torch.rand(B, T, D, generator=g)
    ys = torch.randint(0, C, (B,), generator=g)
    return params, noise, xs, ys, dt


def profile_breakdown(name: str, fn, row_limit: int = 12) -> None:
    """Self-CPU time of one warm ``fn()`` by operator, as ``torch.profiler``'s table."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    print(f"\n{name}: one forward + backward under torch.profiler, by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds")
    parser.add_argument("--profile", action="store_true", help="profile one run of each")
    args = parser.parse_args(argv)
    try:
        import torchsde
    except ImportError:
        raise SystemExit("bench_sde needs torchsde: pip install -e '.[test]'") from None
    from nrnn_theory import rollout

    torch.set_num_threads(args.threads)
    if args.cpu_time:
        import time

        import _timing

        _timing.time = types.SimpleNamespace(perf_counter=time.process_time)
    B, T, H = (16, 64, 32) if args.quick else (args.batch, args.seq_len, args.hidden)
    D, C = 1, 10
    rounds = 2 if args.quick else args.rounds
    params, noise, xs, ys, dt = problem(B, T, H, D, C)
    bm = torchsde.BrownianInterval(t0=0.0, t1=T * dt, size=(B, H), dt=dt, entropy=1234)
    ts = torch.linspace(0.0, T * dt, T + 1)
    eta = torch.stack([bm(float(ts[k]), float(ts[k + 1])) for k in range(T)], 1) / math.sqrt(dt)
    names = ["A", "W", "U", "b", "V", "c"]
    leaves = {n: getattr(params, n).detach().clone().requires_grad_() for n in names}
    p = params.replace(**leaves)

    def package():
        h = rollout(p, xs, noise=noise, eta=eta)
        loss = F.cross_entropy(h @ p.V.mT + p.c, ys)
        return h, torch.autograd.grad(loss, list(leaves.values()))

    eps, s1, s2 = noise.epsilon, noise.sigma1, noise.sigma2

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def __init__(self, uxs):
            super().__init__()
            self.uxs = uxs

        def f(self, t, y):
            k = min(int(round(float(t) / dt)), T - 1)
            return y @ p.A.mT + torch.tanh(y @ p.W.mT + self.uxs[k])

        def g(self, t, y):
            return eps * (s1 + s2 * y)

    def reference():
        uxs = (xs @ p.U.mT + p.b).unbind(1)
        y = torchsde.sdeint(SDE(uxs), xs.new_zeros(B, H), ts, bm=bm, method="euler", dt=dt)
        h = y[-1]
        loss = F.cross_entropy(h @ p.V.mT + p.c, ys)
        return h, torch.autograd.grad(loss, list(leaves.values()))

    (h_pkg, g_pkg), (h_ref, g_ref) = package(), reference()
    torch.testing.assert_close(h_pkg, h_ref, rtol=1e-4, atol=1e-5)
    worst = 0.0
    for a, b in zip(g_pkg, g_ref, strict=True):
        worst = max(worst, float((a - b).norm() / b.norm().clamp_min(1e-30)))
    assert worst < 1e-3, f"gradients differ: relative {worst:.2e}"
    state_diff = float((h_pkg - h_ref).detach().abs().max())

    window = 0.1 if args.quick else 0.3
    fwd = T * matmul_flops(B, H, 2 * H) + matmul_flops(T * B, D, H) + matmul_flops(B, H, C)
    bwd = T * matmul_flops(B, 2 * H, H) + matmul_flops(H, T * B, 2 * H)
    r_f = measured_gflops((B, H, 2 * H), seconds=window)
    r_b = measured_gflops((B, 2 * H, H), seconds=window)
    r_w = measured_gflops((H, T * B, 2 * H), seconds=window)
    floor_s = floor_seconds(fwd, r_f) + floor_seconds(T * matmul_flops(B, 2 * H, H), r_b)
    floor_s += floor_seconds(matmul_flops(H, T * B, 2 * H), r_w)
    cmp = compare({"package": package, "torchsde": reference}, rounds=rounds)
    print(machine_line())
    print(f"Euler-Maruyama forward + backward: T = {T}, H = {H}, B = {B}, D = 1, dt = 2^-7, "
          f"diagonal noise eps (s1 + s2 h); {cmp.rounds} interleaved rounds")  # fmt: skip
    print(f"equal results: final states within {state_diff:.1e} (max abs), gradients "
          f"within {worst:.1e} (relative)")  # fmt: skip
    print(f"floor: {(fwd + bwd) / 1e9:.2f} GFLOP at {r_f:.1f} / {r_b:.1f} / {r_w:.1f} GFLOP/s "
          "(forward / backward / stacked weight-gradient shapes)")  # fmt: skip
    print(report([("EM forward + backward", cmp.times["package"], cmp.times["torchsde"],
                   floor_s)]))  # fmt: skip
    print(f"torchsde/package = {cmp.ratios['torchsde/package']:.2f}x (target >= 3), "
          f"package/floor = {cmp.times['package'] / floor_s:.2f}x")  # fmt: skip
    if args.profile:
        profile_breakdown("package", package)
        profile_breakdown("torchsde", reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
