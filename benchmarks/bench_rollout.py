"""One training step (forward + backward) of the package's rollout at the pixel-MNIST shape.

``rollout`` + readout + cross-entropy + gradient in (A, W, U, b, V, c) at
B = 128, T = 784, H = 128, D = 1, against, in one run (``_timing.compare``, interleaved
rounds, medians of per-round ratios):

* **references** a user would otherwise write: the textbook loop with two matmuls per
  step over ``unbind`` views, differentiated by autograd; and the naive loop indexing
  ``Ux[:, t]`` on a tensor that requires grad, whose backward is quadratic in T
  (docs/environment.md, *The time-loop pitfall*; timed once, outside the rounds,
  unless ``--no-naive``);
* **the arithmetic floor**: the matmul FLOPs of the step (T recurrent products forward,
  as many backward, the stacked weight gradients, projection and readout) divided by
  the GFLOP/s this machine measures now for the same shapes.

Both noise settings of the package are timed: clean and the authors' small noise
(``paper_code`` a = mu = 0.02, drawn from a generator). Memory: the peak resident size
of a child process running one differentiable step at T and 2T (linear in T: BPTT keeps
O(T B H)) and one no-grad rollout at T and 10T (flat in T).

Targets (issue 3): rollout <= 2x the floor; the naive loop >= 10x slower than the
rollout. Run ``python benchmarks/bench_rollout.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
import types

import torch
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report

from nrnn_theory import NoiseSpec, NRNNParams, readout, rollout


def make_problem(B: int, T: int, H: int, D: int = 1, C: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    params = NRNNParams.from_lipschitz(
        torch.randn(H, H, generator=g) * 0.1 / H,
        torch.randn(H, H, generator=g) * 0.1 / H,
        torch.randn(H, D, generator=g) * 0.1,
        torch.zeros(H),
        torch.randn(C, H, generator=g) / H**0.5,
        torch.zeros(C),
        beta=0.75, gamma_A=1e-3, gamma_W=1e-3, dt=0.1,
    )  # fmt: skip
    leaves = {k: getattr(params, k).detach().clone().requires_grad_() for k in "AWUbVc"}
    xs = torch.rand(B, T, D, generator=g)
    ys = torch.randint(0, C, (B,), generator=g)
    return params.replace(**leaves), leaves, xs, ys


def step_package(params, leaves, xs, ys, noise, g):
    h = rollout(params, xs, noise=noise, generator=g)
    loss = torch.nn.functional.cross_entropy(readout(params, h), ys)
    return torch.autograd.grad(loss, list(leaves.values()))


def step_textbook(params, leaves, xs, ys, noise, g):
    """The usual hand-written loop: two matmuls per step over ``unbind`` views."""
    A, W, U, b, V, c = (leaves[k] for k in "AWUbVc")
    dt = params.dt
    h = xs.new_zeros(xs.shape[0], A.shape[0])
    for u in (xs @ U.T + b).unbind(1):
        h = h + dt * (h @ A.T + torch.tanh(h @ W.T + u))
    loss = torch.nn.functional.cross_entropy(h @ V.T + c, ys)
    return torch.autograd.grad(loss, list(leaves.values()))


def step_naive(params, leaves, xs, ys, noise, g):
    """The same loop indexing ``Ux[:, t]`` on a grad tensor (quadratic backward)."""
    A, W, U, b, V, c = (leaves[k] for k in "AWUbVc")
    dt = params.dt
    h = xs.new_zeros(xs.shape[0], A.shape[0])
    Ux = xs @ U.T + b
    for t in range(xs.shape[1]):
        h = h + dt * (h @ A.T + torch.tanh(h @ W.T + Ux[:, t]))
    loss = torch.nn.functional.cross_entropy(h @ V.T + c, ys)
    return torch.autograd.grad(loss, list(leaves.values()))


def floor(B: int, T: int, H: int, D: int, C: int, window: float):
    """(seconds, FLOPs, rates) of one step's matrix products (bench_training.step_floor)."""
    fwd = T * matmul_flops(B, H, 2 * H) + 3 * matmul_flops(T * B, D, H) + 3 * matmul_flops(B, H, C)
    bwd = T * matmul_flops(B, 2 * H, H)
    wgrad = matmul_flops(H, T * B, 2 * H)
    rates = [
        measured_gflops((B, H, 2 * H), seconds=window),
        measured_gflops((B, 2 * H, H), seconds=window),
        measured_gflops((H, T * B, 2 * H), seconds=window),
    ]
    s = floor_seconds(fwd, rates[0]) + floor_seconds(bwd, rates[1])
    return s + floor_seconds(wgrad, rates[2]), fwd + bwd + wgrad, rates


def _peak_rss_kib() -> int:
    """This process's peak resident size in KiB.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``ru_maxrss`` survives
    ``exec`` on Linux, so in a child started by a large parent it starts at the
    parent's size and would hide the child's own growth.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(kind: str, B: int, T: int, H: int) -> None:
    """Run one step in this (child) process and print its peak RSS growth in bytes."""
    params, leaves, xs, ys = make_problem(B, T, H)
    before = _peak_rss_kib()
    if kind == "grad":
        step_package(params, leaves, xs, ys, None, None)
    else:
        with torch.no_grad():
            rollout(params.detach(), xs)
    after = _peak_rss_kib()
    print(json.dumps({"peak_growth_bytes": 1024 * (after - before)}))


def peak_growth(kind: str, B: int, T: int, H: int) -> int:
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import bench_rollout as b; "
        f"b._child({kind!r}, {B}, {T}, {H})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_bytes"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape, two rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-naive", action="store_true", help="skip the quadratic loop")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter
    if args.cpu_time:
        import _timing

        clock = time.process_time
        _timing.time = types.SimpleNamespace(perf_counter=clock)
    B, T, H = (16, 64, 32) if args.quick else (128, 784, 128)
    rounds = 2 if args.quick else args.rounds
    g = torch.Generator().manual_seed(1)
    params, leaves, xs, ys = make_problem(B, T, H)
    noise = NoiseSpec.paper_code(add=0.02, mult=0.02)

    def bind(fn, nz):
        return lambda: fn(params, leaves, xs, ys, nz, g)

    cmp = compare(
        {
            "clean": bind(step_package, None),
            "paper_code": bind(step_package, noise),
            "textbook": bind(step_textbook, None),
        },
        rounds=rounds,
    )
    floor_s, flops, rates = floor(B, T, H, 1, 10, 0.1 if args.quick else 0.3)
    naive_s = math.nan
    if not args.no_naive:
        t0 = clock()
        step_naive(params, leaves, xs, ys, None, g)
        naive_s = clock() - t0
    res = {
        "machine": machine_line(),
        "shape": {"B": B, "T": T, "H": H},
        "seconds": {**cmp.times, "naive": naive_s, "floor": floor_s},
        "floor_gflop": flops / 1e9,
        "rates_gflops": rates,
        "textbook/clean": cmp.ratios["textbook/clean"],
        "clean/floor": cmp.times["clean"] / floor_s,
        "paper_code/floor": cmp.times["paper_code"] / floor_s,
        "naive/clean": naive_s / cmp.times["clean"],
    }
    for key, kind, mult in (("grad", "grad", (1, 2)), ("nograd", "nograd", (1, 10))):
        res[f"peak_rss_{key}_bytes"] = [peak_growth(kind, B, T * m, H) for m in mult]
    if args.json:
        print(json.dumps(res, indent=2))
        return res
    mb = 2.0**20
    print(res["machine"])
    print(f"one training step: B = {B}, T = {T}, H = {H}, D = 1; {cmp.rounds} interleaved rounds")
    print(f"floor: {flops / 1e9:.2f} GFLOP at {rates[0]:.1f} / {rates[1]:.1f} / {rates[2]:.1f} "
          "GFLOP/s (forward / backward / stacked weight-gradient shapes)")  # fmt: skip
    print(report([
        ("rollout, clean", cmp.times["clean"], cmp.times["textbook"], floor_s),
        ("rollout, paper_code a = mu = 0.02", cmp.times["paper_code"], None, floor_s),
        ("textbook two-matmul loop (ref.)", cmp.times["textbook"], None, floor_s),
    ]))  # fmt: skip
    print(f"clean/floor = {res['clean/floor']:.2f}x (target <= 2); textbook/clean = "
          f"{res['textbook/clean']:.2f}x (median of per-round ratios)")  # fmt: skip
    if not args.no_naive:
        print(f"naive x[:, t] loop: {naive_s:.2f} s, {res['naive/clean']:.1f}x the clean rollout "
              "(target >= 10)")  # fmt: skip
    g1, g2 = res["peak_rss_grad_bytes"]
    n1, n10 = res["peak_rss_nograd_bytes"]
    print(f"peak RSS growth of a child process: differentiable step T {g1 / mb:.0f} MiB, "
          f"2T {g2 / mb:.0f} MiB; no-grad rollout T {n1 / mb:.0f} MiB, "
          f"10T {n10 / mb:.0f} MiB")  # fmt: skip
    return res


if __name__ == "__main__":
    main()
