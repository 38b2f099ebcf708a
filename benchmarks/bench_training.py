"""Training throughput of NoisyRNN against a naive loop and the arithmetic floor.

One epoch of training steps (forward, cross-entropy, backward, Adam) of
``nrnn_theory.train.NoisyRNN`` at T = 784, H = 128, B = 128 (pixel-by-pixel MNIST
size, the authors' small-noise setting a = mu = 0.02 in the paper_code convention),
timed against two references written inside this script:

* naive: the same model as a textbook Python loop that indexes ``Ux[:, t]`` on a
  tensor that requires grad (quadratic backward in T, ENVIRONMENT.md §4); timed over
  a few batches only;
* floor: the same arithmetic as a tight loop (``unbind`` over time, one fused matmul
  per step, no validation, no abstraction), the cost the package cannot go below.

Prints samples per second for each and the ratios package/naive (target >= 10) and
floor/package (target <= 2). ``--quick`` runs a seconds-long smoke version.

``--explicit-reg`` times instead one epoch of ``nrnn_theory.train.fit`` on digits
(T = 64, H = 64, B = 128, the whole training split, validation included) for three
ways of training with the noise a = 0.05, mu = 0.05 (paper_code): noise injection
(the reference), and a noise-free model with the exact explicit regularizer
(``explicit_regularizer_penalty``) on K = 128 (the whole batch) and K = 16 examples of
each batch; it prints each epoch's time and the ratio to noise injection.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def _batches(n_samples: int, batch: int, T: int, g: torch.Generator, device):
    xs = torch.rand(n_samples, T, 1, generator=g).to(device)
    ys = torch.randint(0, 10, (n_samples,), generator=g).to(device)
    return list(zip(xs.split(batch), ys.split(batch), strict=True))


def _lipschitz(M, beta, gamma):
    eye = torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
    return (1 - beta) * (M + M.T) + beta * (M - M.T) - gamma * eye


def _naive_forward(model, x, g):
    """Textbook loop: ``Ux[:, t]`` on a grad tensor, noise as in the authors' code."""
    A = _lipschitz(model.M_A, model.beta, model.gamma_A)
    W = _lipschitz(model.M_W, model.beta, model.gamma_W)
    Ux = x @ model.U.T + model.b
    a, mu = model.noise.additive, model.noise.multiplicative
    h = x.new_zeros(x.shape[0], model.hidden_size)
    for t in range(x.shape[1]):
        zeta = torch.randn(h.shape, generator=g, device=h.device)
        m = mu * torch.rand(h.shape, generator=g, device=h.device) + (1 - mu)
        f = h @ A.T + torch.tanh(h @ W.T + Ux[:, t])
        h = h + model.dt * m * f + a * zeta
    return h @ model.V.T + model.c


def _floor_forward(model, x, g):
    """The same arithmetic, tight: one (B, H) x (H, 2H) matmul per step over ``unbind``."""
    H = model.hidden_size
    A = _lipschitz(model.M_A, model.beta, model.gamma_A)
    W = _lipschitz(model.M_W, model.beta, model.gamma_W)
    RT = torch.cat([A, W], dim=0).T
    Ux = torch.addmm(model.b, x.reshape(-1, 1), model.U.T).reshape(x.shape[0], -1, H)
    a, mu, dt = model.noise.additive, model.noise.multiplicative, model.dt
    h = x.new_zeros(x.shape[0], H)
    for u in Ux.unbind(1):
        zeta = torch.randn(h.shape, generator=g, device=h.device)
        m = mu * torch.rand(h.shape, generator=g, device=h.device) + (1 - mu)
        hz = h @ RT
        h = h + (dt * m) * (hz[:, :H] + torch.tanh(hz[:, H:] + u)) + a * zeta
    return h @ model.V.T + model.c


def _epoch(forward, model, batches, g, device) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(forward(model, x, g), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _explicit_reg_main(args) -> int:
    """One fit() epoch on digits: noise injection vs the explicit regularizer."""
    import dataclasses

    from nrnn_theory import NoiseSpec
    from nrnn_theory.train import NoisyRNN, explicit_regularizer_penalty, fit, load_task
    from nrnn_theory.train.loop import resolve_device

    device = resolve_device(args.device)
    data = load_task("digits", seed=0)
    H, B, ks = 64, 128, (128, 16)
    if args.quick:
        n = 256
        data = dataclasses.replace(
            data,
            train_x=data.train_x[:n],
            train_y=data.train_y[:n],
            val_x=data.val_x[:64],
            val_y=data.val_y[:64],
            spec={},
        )
        H = 16
    noise = NoiseSpec.paper_code(add=0.05, mult=0.05)

    def epoch_seconds(model_noise, penalty) -> float:
        model = NoisyRNN(1, H, 10, noise=model_noise, generator=torch.Generator().manual_seed(1))
        hist = fit(model, data, epochs=1, batch_size=B, lr=1e-2, device=device, quiet=True,
                   penalty=penalty)  # fmt: skip
        return hist.records[0]["seconds"]

    epoch_seconds(noise, None)  # warm-up (allocator, first-call costs)
    t_noise = epoch_seconds(noise, None)
    t_reg = {k: epoch_seconds(None, explicit_regularizer_penalty(noise, weight=1.0,
                                                                 max_examples=k))
             for k in ks}  # fmt: skip
    print(
        f"fit() epoch on digits: T = {data.train_x.shape[1]}, H = {H}, B = {B}, "
        f"{data.size('train')} training samples (+ validation), device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"  noise injection (paper_code a = mu = 0.05): {t_noise:8.2f} s")
    for k in ks:
        print(
            f"  explicit regularizer, K = {k:3d}            : {t_reg[k]:8.2f} s"
            f"  ({t_reg[k] / t_noise:6.1f}x noise injection)"
        )
    assert all(math.isfinite(t) for t in (t_noise, *t_reg.values()))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--seq-len", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=3500, help="one epoch (MNIST-5k train)")
    parser.add_argument("--naive-batches", type=int, default=1, help="batches timed naively")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--explicit-reg",
        action="store_true",
        help="digits: noise injection vs explicit-regularizer training (K = 128, 16)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.explicit_reg:
        return _explicit_reg_main(args)
    if args.quick:
        args.seq_len, args.hidden, args.batch, args.samples, args.naive_batches = 64, 32, 32, 128, 1

    from nrnn_theory import NoiseSpec
    from nrnn_theory.train import NoisyRNN
    from nrnn_theory.train.loop import resolve_device

    device = resolve_device(args.device)
    g_data = torch.Generator().manual_seed(0)
    batches = _batches(args.samples, args.batch, args.seq_len, g_data, device)
    noise = NoiseSpec.paper_code(add=0.02, mult=0.02)

    def fresh():
        return (
            NoisyRNN(
                1, args.hidden, 10, dt=0.01, noise=noise, generator=torch.Generator().manual_seed(1)
            )
            .to(device)
            .train()
        )

    def package_forward(model, x, g):
        return model(x, generator=g)

    g = torch.Generator(device=device).manual_seed(2)
    # warm-up (allocator, kernels) on one batch each
    for fwd in (package_forward, _floor_forward):
        _epoch(fwd, fresh(), batches[:1], g, device)
    t_pkg = _epoch(package_forward, fresh(), batches, g, device)
    t_floor = _epoch(_floor_forward, fresh(), batches, g, device)
    naive = batches[: args.naive_batches]
    t_naive = _epoch(_naive_forward, fresh(), naive, g, device)

    n = sum(len(y) for _, y in batches)
    n_naive = sum(len(y) for _, y in naive)
    sps_pkg, sps_floor, sps_naive = n / t_pkg, n / t_floor, n_naive / t_naive
    print(
        f"NoisyRNN training epoch: T = {args.seq_len}, H = {args.hidden}, B = {args.batch}, "
        f"{n} samples, device {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"  package (NoisyRNN -> dynamics.rollout): {t_pkg:8.2f} s  {sps_pkg:9.1f} samples/s")
    print(f"  floor (tight unbind loop)             : {t_floor:8.2f} s  {sps_floor:9.1f} samples/s")
    print(
        f"  naive (x[:, t] on a grad tensor)      : {t_naive:8.2f} s  {sps_naive:9.1f} samples/s"
        f"  ({len(naive)} batches)"
    )
    print(f"  ratio package / naive: {sps_pkg / sps_naive:6.1f}x  (target >= 10)")
    print(f"  ratio floor / package: {sps_floor / sps_pkg:6.2f}x  (target <= 2)")
    assert math.isfinite(sps_pkg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
