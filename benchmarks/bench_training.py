"""Training step of NoisyRNN against the authors' code and the arithmetic floor (issue 18).

Default: one training step (forward, cross-entropy, backward, Adam) at the pixel-MNIST
shape T = 784, H = 128, B = 128, D = 1, with the authors' small noise a = mu = 0.02
(``paper_code``), dt = 0.01 and a learned per-unit step (their ``solver='noisy'``):

* **package**: ``nrnn_theory.train.NoisyRNN(..., learn_step=True)``, i.e.
  ``dynamics.rollout`` (the fused recurrence with its hand-written backward);
* **reference**: the authors' official NoisyRNN (``models.py`` of
  github.com/erichson/NoisyRNN) imported from a local checkout given by
  ``--authors-repo PATH`` (nothing of theirs is in this repository; their ``tools.py``
  imports torchvision, which is stubbed when it is not installed), or, without it, a
  re-implementation written here from the description of their forward in docs/theory/conventions.md
  [code]: row vectors ``h @ A``, a per-step input ``Linear``, per-step ``torch.randn`` /
  ``torch.rand`` draws, autograd. The script prints which one it ran;
* **floor**: the matmul FLOPs of the step (input projection, T recurrent products
  forward, twice that backward, the weight gradients, the readout) divided by the
  GFLOP/s this machine measures now for the same shapes (``_timing.measured_gflops``).

Timings are interleaved rounds (``_timing.compare``); ratios are medians of per-round
ratios. Targets (issue 18): package <= 1.5x the floor, >= 2x faster than the reference.

``--explicit-reg`` times instead one ``fit()`` epoch at the zoo's settings
(``experiments.zoo`` preset ``quick``: digits, T = 64, H = 32, B = 64, dt = 0.1,
regularizer on 16 examples per batch, noise a = mu = 0.02): noise injection (the
reference) against the noise-free model trained with the explicit-regularizer penalty,
pathwise (the default, unbiased) and exact. Target: pathwise <= 3x noise injection.

``--quick`` runs a seconds-long smoke version of either mode. ``--threads`` sets torch's
intra-op threads (default 1, as the issue measured); ``--cpu-time`` times CPU seconds of
the process instead of wall time (on a loaded machine the better estimate of a quiet
single-threaded run; the floor's GFLOP/s are then CPU-time rates too). ``--profile``
prints ``torch.profiler``'s table of one package training step (after a warm-up step).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import math
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import compare, floor_seconds, machine_line, matmul_flops, measured_gflops, report


# ------------------------------------------------------------------ the reference
class WrittenFromTheory(torch.nn.Module):
    """The authors' NoisyRNN forward as docs/theory/conventions.md [code] describes it.

    Row vectors (``h @ A``), free matrices ``B`` and ``C`` (their names), the input and
    output layers as ``nn.Linear``, the Lipschitz matrices formed at the first step,
    fresh ``randn``/``rand`` draws at every step in training mode, autograd for the
    backward pass.
    """

    def __init__(self, D, C, H, dt, beta, gamma, init_std, add, mult, generator):
        super().__init__()
        self.H, self.beta, self.gamma, self.add, self.mult = H, beta, gamma, add, mult
        self.E = torch.nn.Linear(D, H)
        self.D = torch.nn.Linear(H, C)
        self.B = torch.nn.Parameter(torch.randn(H, H, generator=generator) * init_std / H)
        self.C = torch.nn.Parameter(torch.randn(H, H, generator=generator) * init_std / H)
        self.register_buffer("I", torch.eye(H))
        self.d = torch.nn.Parameter(torch.full((H,), dt))

    def forward(self, x, generator=None):
        h = x.new_zeros(x.shape[0], self.H)
        b, g = self.beta, self.gamma
        A = b * (self.B - self.B.T) + (1 - b) * (self.B + self.B.T) - g * self.I
        W = b * (self.C - self.C.T) + (1 - b) * (self.C + self.C.T) - g * self.I
        for i in range(x.shape[1]):
            z = self.E(x[:, i, :])
            zeta = torch.randn(h.shape, generator=generator)
            m = self.mult * torch.rand(h.shape, generator=generator) + (1 - self.mult)
            h = h + self.d * m * (h @ A + torch.tanh(h @ W + z)) + self.add * zeta
        return self.D(h)


def authors_model(path: str, H: int, dt: float, add: float, mult: float):
    """Their ``models.NoisyRNN`` from a checkout, and a forward in training mode."""
    root = Path(path).expanduser().resolve()
    if not (root / "models.py").is_file():
        raise SystemExit(f"--authors-repo: no models.py in {root}")
    try:  # their tools.py imports torchvision at module level (datasets only)
        importlib.import_module("torchvision")
    except Exception:
        stub = types.ModuleType("torchvision")
        stub.datasets = types.ModuleType("torchvision.datasets")
        stub.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.update(
            {
                "torchvision": stub,
                "torchvision.datasets": stub.datasets,
                "torchvision.transforms": stub.transforms,
            }
        )
    import torch._utils as tu

    if not hasattr(tu, "_accumulate"):  # removed from torch; their tools.py imports it
        tu._accumulate = itertools.accumulate
    sys.path.insert(0, str(root))
    models = importlib.import_module("models")
    net = models.NoisyRNN(
        input_dim=1, output_classes=10, n_units=H, eps=dt, beta=0.75, gamma_A=0.001,
        gamma_W=0.001, init_std=0.1, alpha=1, solver="noisy", add_noise=add, mult_noise=mult,
    )  # fmt: skip
    return net, (lambda model, x: model(x, mode="train"))


# ------------------------------------------------------------------------- floor
def step_floor(B: int, T: int, H: int, D: int, C: int, window_s: float):
    """(seconds, FLOPs, {shape: GFLOP/s}) of one training step's matrix products.

    Recurrent products forward at the rate of ``(B, H) @ (H, 2H)``, backward at that of
    ``(B, 2H) @ (2H, H)``, the weight gradients at that of the stacked
    ``(H, T B) @ (T B, 2H)`` product; the input projection and the readout (0.3% of the
    FLOPs at the default shape) are counted at the forward rate (their own K = 1 or
    N = 10 products run far slower, which would only loosen the floor).
    """
    fwd = T * matmul_flops(B, H, 2 * H) + matmul_flops(T * B, D, H) + matmul_flops(B, H, C)
    small = 2 * matmul_flops(T * B, D, H) + 2 * matmul_flops(B, H, C)  # their gradients
    bwd = T * matmul_flops(B, 2 * H, H)
    wgrad = matmul_flops(H, T * B, 2 * H)
    rates = {
        (B, H, 2 * H): measured_gflops((B, H, 2 * H), seconds=window_s),
        (B, 2 * H, H): measured_gflops((B, 2 * H, H), seconds=window_s),
        (H, T * B, 2 * H): measured_gflops((H, T * B, 2 * H), seconds=window_s),
    }
    r_f, r_b, r_w = rates.values()
    seconds = floor_seconds(fwd + small, r_f) + floor_seconds(bwd, r_b) + floor_seconds(wgrad, r_w)
    return seconds, fwd + small + bwd + wgrad, rates


def _batches(n: int, B: int, T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(n, T, 1, generator=g)
    ys = torch.randint(0, 10, (n,), generator=g)
    return list(zip(xs.split(B), ys.split(B), strict=True))


def training_main(args) -> int:
    from nrnn_theory import NoiseSpec
    from nrnn_theory.train import NoisyRNN

    B, T, H = (32, 64, 32) if args.quick else (args.batch, args.seq_len, args.hidden)
    dt, add, mult = 0.01, 0.02, 0.02
    (x, y) = _batches(B, B, T)[0]
    noise = NoiseSpec.paper_code(add=add, mult=mult)
    pkg = NoisyRNN(1, H, 10, dt=dt, noise=noise, learn_step=True,
                   generator=torch.Generator().manual_seed(1)).train()  # fmt: skip
    g_pkg = torch.Generator().manual_seed(2)
    if args.authors_repo:
        ref, ref_forward = authors_model(args.authors_repo, H, dt, add, mult)
        ref_name = f"authors' models.NoisyRNN ({args.authors_repo})"
    else:
        ref = WrittenFromTheory(1, 10, H, dt, 0.75, 0.001, 0.1, add, mult,
                                torch.Generator().manual_seed(1))  # fmt: skip
        g_ref = torch.Generator().manual_seed(3)

        def ref_forward(model, x):
            return model(x, generator=g_ref)

        ref_name = "re-implementation of the authors' forward (docs/theory/conventions.md [code])"
    ref.train()
    opt_pkg = torch.optim.Adam(pkg.parameters(), lr=1e-3)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-3)

    def package():
        loss = F.cross_entropy(pkg(x, generator=g_pkg), y)
        opt_pkg.zero_grad(set_to_none=True)
        loss.backward()
        opt_pkg.step()

    def reference():
        loss = F.cross_entropy(ref_forward(ref, x), y)
        opt_ref.zero_grad(set_to_none=True)
        loss.backward()
        opt_ref.step()

    if args.profile:  # where one package step's time goes (after a warm-up step)
        from torch.profiler import profile

        package()
        with profile() as prof:
            package()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    floor_s, flops, rates = step_floor(B, T, H, 1, 10, 0.1 if args.quick else 0.3)
    cmp = compare({"package": package, "reference": reference}, rounds=args.rounds)
    print(machine_line())
    print(f"one training step: T = {T}, H = {H}, B = {B}, D = 1, paper_code a = mu = 0.02, "
          f"learned step; {cmp.rounds} interleaved rounds")  # fmt: skip
    print(f"reference: {ref_name}")
    print(f"floor: {flops / 1e9:.2f} GFLOP of matrix products at the measured rates:")
    for (m, k, n), rate in rates.items():
        print(f"  ({m} x {k}) @ ({k} x {n}): {rate:7.1f} GFLOP/s")
    print(report([("training step", cmp.times["package"], cmp.times["reference"], floor_s)]))
    print(f"package/floor = {cmp.times['package'] / floor_s:.2f}x (target <= 1.5); "
          f"reference/package = {cmp.ratios['reference/package']:.2f}x (target >= 2), "
          "median of per-round ratios")  # fmt: skip
    assert math.isfinite(cmp.times["package"])
    return 0


# ------------------------------------------------------------ explicit regularizer
def explicit_reg_main(args) -> int:
    import dataclasses

    from nrnn_theory import NoiseSpec
    from nrnn_theory.train import NoisyRNN, explicit_regularizer_penalty, fit, load_task

    data = load_task("digits", seed=0)
    H, B, K, dt, lr = 32, 64, 16, 0.1, 0.01  # the zoo's "quick" preset
    if args.quick:
        n, v = 256, 64
        data = dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n],
                                   val_x=data.val_x[:v], val_y=data.val_y[:v], spec={})  # fmt: skip
        H = 16
    noise = NoiseSpec.paper_code(add=0.02, mult=0.02)
    pathwise = explicit_regularizer_penalty(noise, weight=1.0, max_examples=K)
    exact = dataclasses.replace(pathwise, estimator="exact")

    def epoch(model_noise, penalty):
        def run():
            model = NoisyRNN(1, H, 10, dt=dt, noise=model_noise,
                             generator=torch.Generator().manual_seed(1))  # fmt: skip
            fit(model, data, epochs=1, batch_size=B, lr=lr, device="cpu", quiet=True,
                penalty=penalty)  # fmt: skip

        return run

    cmp = compare(
        {
            "noise": epoch(noise, None),
            "pathwise": epoch(None, pathwise),
            "exact": epoch(None, exact),
        },
        rounds=args.rounds,
    )
    n_train, n_val, T = data.size("train"), data.size("val"), data.train_x.shape[1]
    n_batch = math.ceil(n_train / B)
    # matmul FLOPs of one epoch (backward = 2x forward): training, validation, penalty
    fwd_step = matmul_flops(B, H, 2 * H)
    train_f = 3 * T * fwd_step * n_train / B
    val_f = T * matmul_flops(n_val, H, 2 * H)
    # pathwise: reference chain, its bulk products, h1 (1 probe) and lambda, 3x each
    pen_f = 3 * T * 4 * matmul_flops(K, H, 2 * H) * n_batch
    # exact: J S, (J S) J^T and S W^T per step and example (batched H x H products)
    exact_f = 3 * T * 3 * matmul_flops(H, H, H, batch=K) * n_batch
    rate = measured_gflops((B, H, 2 * H), seconds=0.1 if args.quick else 0.3)
    rate_k = measured_gflops((K, H, 2 * H), seconds=0.1 if args.quick else 0.3)
    rate_b = measured_gflops((H, H, H), batch=K, seconds=0.1 if args.quick else 0.3)
    base = floor_seconds(train_f + val_f, rate)
    floors = {
        "noise": base,
        "pathwise": base + floor_seconds(pen_f, rate_k),
        "exact": base + floor_seconds(exact_f, rate_b),
    }
    print(machine_line())
    print(f"one fit() epoch on digits (zoo preset quick): T = {T}, H = {H}, B = {B}, "
          f"{n_train} training + {n_val} validation examples, regularizer on K = {K} "
          f"examples per batch; {cmp.rounds} interleaved rounds")  # fmt: skip
    print(f"floor rates: (B x H) @ (H x 2H) {rate:.1f}, (K x H) @ (H x 2H) {rate_k:.1f}, "
          f"batched H x H (batch K) {rate_b:.1f} GFLOP/s")  # fmt: skip
    rows = [
        ("noise injection (reference)", cmp.times["noise"], None, floors["noise"]),
        ("explicit reg., pathwise (default)", cmp.times["pathwise"], cmp.times["noise"],
         floors["pathwise"]),
        ("explicit reg., exact", cmp.times["exact"], cmp.times["noise"], floors["exact"]),
    ]  # fmt: skip
    print(report(rows))
    print(f"pathwise / noise injection = {cmp.ratios['pathwise/noise']:.2f}x (target <= 3); "
          f"exact / noise injection = {cmp.ratios['exact/noise']:.2f}x; "
          "medians of per-round ratios")  # fmt: skip
    return 0


def use_cpu_time() -> None:
    """Make ``_timing`` measure this process's CPU seconds instead of wall time."""
    import time

    import _timing

    _timing.time = types.SimpleNamespace(perf_counter=time.process_time)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--authors-repo", default=None, help="checkout of erichson/NoisyRNN")
    parser.add_argument(
        "--explicit-reg",
        action="store_true",
        help="fit() epoch: noise injection vs the explicit regularizer",
    )
    parser.add_argument("--profile", action="store_true", help="profile one package step")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time CPU seconds of this process (a loaded machine's best estimate of the "
        "quiet single-threaded wall time)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cpu_time:
        use_cpu_time()
    if args.quick:
        args.rounds = min(args.rounds, 2)
    return explicit_reg_main(args) if args.explicit_reg else training_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
