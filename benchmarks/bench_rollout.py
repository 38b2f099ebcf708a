"""One training step (forward + backward) of the package's rollout at the pixel-MNIST shape.

Compares, in one run on one machine:

* ``rollout``: :func:`nrnn_theory.rollout` + readout + cross-entropy + backward;
* ``floor``: the bare arithmetic, the same matmuls and tanh in a tight ``unbind`` loop;
* ``naive``: the common loop indexing ``Ux[:, t]`` on a tensor that requires grad,
  whose backward is quadratic in T (ENVIRONMENT.md §4).

Targets (issue 3): rollout <= 2x the floor; naive >= 10x slower than the rollout.
Also reports the bytes autograd saves for backward at T and 2T (linear in T) and the
peak bytes torch allocates during a no-grad rollout at T and 10T (flat in T).

Run: ``python benchmarks/bench_rollout.py`` (``--quick`` for a seconds-long smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

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
        beta=0.75,
        gamma_A=1e-3,
        gamma_W=1e-3,
        dt=0.1,
    )
    leaves = {k: getattr(params, k).detach().clone().requires_grad_() for k in "AWUbVc"}
    xs = torch.rand(B, T, D, generator=g)
    ys = torch.randint(0, C, (B,), generator=g)
    return params.replace(**leaves), leaves, xs, ys


def step_package(params, leaves, xs, ys, noise, g):
    h = rollout(params, xs, noise=noise, generator=g)
    loss = torch.nn.functional.cross_entropy(readout(params, h), ys)
    torch.autograd.grad(loss, list(leaves.values()))


def step_floor(params, leaves, xs, ys, noise, g):
    """The package's arithmetic with nothing around it: one fused matmul per step."""
    A, W, U, b, V, c = (leaves[k] for k in "AWUbVc")
    H, dt = A.shape[0], params.dt
    R = torch.cat([A, W]).T
    h = xs.new_zeros(xs.shape[0], H)
    for u in (xs @ U.T + b).unbind(1):
        hz = h @ R
        h = h + dt * (hz[:, :H] + torch.tanh(hz[:, H:] + u))
    loss = torch.nn.functional.cross_entropy(h @ V.T + c, ys)
    torch.autograd.grad(loss, list(leaves.values()))


def step_textbook(params, leaves, xs, ys, noise, g):
    """The same step written with two matmuls, as most RNN code does."""
    A, W, U, b, V, c = (leaves[k] for k in "AWUbVc")
    dt = params.dt
    h = xs.new_zeros(xs.shape[0], A.shape[0])
    for u in (xs @ U.T + b).unbind(1):
        h = h + dt * (h @ A.T + torch.tanh(h @ W.T + u))
    loss = torch.nn.functional.cross_entropy(h @ V.T + c, ys)
    torch.autograd.grad(loss, list(leaves.values()))


def step_naive(params, leaves, xs, ys, noise, g):
    A, W, U, b, V, c = (leaves[k] for k in "AWUbVc")
    dt = params.dt
    h = xs.new_zeros(xs.shape[0], A.shape[0])
    Ux = xs @ U.T + b
    for t in range(xs.shape[1]):
        h = h + dt * (h @ A.T + torch.tanh(h @ W.T + Ux[:, t]))
    loss = torch.nn.functional.cross_entropy(h @ V.T + c, ys)
    torch.autograd.grad(loss, list(leaves.values()))


def timeit(fn, *args, repeats: int) -> float:
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def saved_bytes(params, xs, noise) -> int:
    """Bytes autograd keeps for the backward pass of one forward."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        rollout(params, xs, noise=noise, generator=torch.Generator().manual_seed(0))
    return total


def nograd_peak_bytes(params, xs) -> int:
    """Peak CPU bytes allocated by torch during a no-grad rollout (profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    params = params.detach()
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        rollout(params, xs)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        level += e.nbytes()
        peak = max(peak, level)
    return peak


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shape, one repeat")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    B, T, H = (16, 64, 32) if args.quick else (128, 784, 128)
    repeats = 1 if args.quick else 3
    g = torch.Generator().manual_seed(1)
    params, leaves, xs, ys = make_problem(B, T, H)
    noise = NoiseSpec.paper_code(add=0.02, mult=0.02)
    res = {"shape": {"B": B, "T": T, "H": H}, "threads": torch.get_num_threads()}
    res["floor_s"] = timeit(step_floor, params, leaves, xs, ys, None, g, repeats=repeats)
    res["textbook_s"] = timeit(step_textbook, params, leaves, xs, ys, None, g, repeats=repeats)
    res["rollout_clean_s"] = timeit(step_package, params, leaves, xs, ys, None, g, repeats=repeats)
    res["rollout_noisy_s"] = timeit(step_package, params, leaves, xs, ys, noise, g, repeats=repeats)
    res["naive_s"] = timeit(step_naive, params, leaves, xs, ys, None, g, repeats=1)
    res["clean_over_floor"] = res["rollout_clean_s"] / res["floor_s"]
    res["noisy_over_floor"] = res["rollout_noisy_s"] / res["floor_s"]
    res["naive_over_clean"] = res["naive_s"] / res["rollout_clean_s"]
    res["saved_bytes_T"] = saved_bytes(params, xs, noise)
    res["saved_bytes_2T"] = saved_bytes(params, torch.cat([xs, xs], 1), noise)
    res["nograd_peak_bytes_T"] = nograd_peak_bytes(params, xs)
    res["nograd_peak_bytes_10T"] = nograd_peak_bytes(params, xs.repeat(1, 10, 1))
    if args.json:
        print(json.dumps(res, indent=2))
        return res
    mb = 2.0**20
    print(f"one training step, B={B} T={T} H={H}, {res['threads']} threads (median of {repeats})")
    print(f"  arithmetic floor       {res['floor_s']:8.3f} s   (fused matmul, nothing else)")
    print(f"  two-matmul loop        {res['textbook_s']:8.3f} s")
    print(
        f"  rollout, clean         {res['rollout_clean_s']:8.3f} s   "
        f"{res['clean_over_floor']:.2f}x floor (target <= 2)"
    )
    print(
        f"  rollout, paper_code    {res['rollout_noisy_s']:8.3f} s   "
        f"{res['noisy_over_floor']:.2f}x floor"
    )
    print(
        f"  naive x[:, t] loop     {res['naive_s']:8.3f} s   "
        f"{res['naive_over_clean']:.1f}x the rollout (target >= 10)"
    )
    print(
        f"  autograd saved bytes   T: {res['saved_bytes_T'] / mb:.1f} MiB, "
        f"2T: {res['saved_bytes_2T'] / mb:.1f} MiB (ratio "
        f"{res['saved_bytes_2T'] / res['saved_bytes_T']:.2f})"
    )
    print(
        f"  no-grad peak allocation  T: {res['nograd_peak_bytes_T'] / mb:.1f} MiB, "
        f"10T: {res['nograd_peak_bytes_10T'] / mb:.1f} MiB"
    )
    return res


if __name__ == "__main__":
    main()
