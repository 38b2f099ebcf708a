"""Build a small NRNN, roll it out on real digit sequences with and without noise in
both conventions, and print what changed.

Uses the UCI 8x8 digits shipped with scikit-learn (the ``data`` extra) as pixel
sequences (T = 64, D = 1, values scaled to [0, 1]).
"""

from __future__ import annotations

import argparse
import math
import time

from nrnn_theory._cli._common import add_output_options, apply_run_options, emit_json


HELP = "roll a small NRNN out on digit sequences, with and without noise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=int, default=32, help="hidden units H")
    parser.add_argument("--examples", type=int, default=256, help="digit sequences used")
    parser.add_argument("--dt", type=float, default=0.1, help="time step")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and noise")
    add_output_options(parser)


def _digit_sequences(n: int):
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "nrnn demo needs scikit-learn for the digits data: pip install 'nrnn_theory[data]'"
        ) from exc
    import torch

    digits = load_digits()
    xs = torch.tensor(digits.data[:n] / 16.0, dtype=torch.float64).unsqueeze(-1)
    ys = torch.tensor(digits.target[:n], dtype=torch.long)
    return xs, ys


def run(args: argparse.Namespace) -> int:
    import torch

    from nrnn_theory import NoiseSpec, NRNNParams, paper_code_to_sde, readout, rollout

    apply_run_options(args)
    if args.hidden < 1:
        raise ValueError(f"--hidden: expected an integer >= 1, got {args.hidden}")
    if args.examples < 1:
        raise ValueError(f"--examples: expected an integer >= 1, got {args.examples}")
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(args.seed)
    xs, ys = _digit_sequences(args.examples)
    H, D, C = args.hidden, 1, 10

    def rand(*shape, scale):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    params = NRNNParams.from_lipschitz(
        rand(H, H, scale=1.0 / H),
        rand(H, H, scale=1.0 / H),
        rand(H, D, scale=1.0),
        torch.zeros(H, dtype=torch.float64),
        rand(C, H, scale=1.0 / math.sqrt(H)),
        torch.zeros(C, dtype=torch.float64),
        beta=0.75,
        gamma_A=0.001,
        gamma_W=0.001,
        dt=args.dt,
    )
    clean = rollout(params, xs)
    clean_loss = float(torch.nn.functional.cross_entropy(readout(params, clean), ys))
    settings = {
        "sde additive (eps*sigma1 = 0.2)": NoiseSpec(epsilon=0.2, sigma1=1.0),
        "sde scalar multiplicative (eps*sigma2 = 0.5)": NoiseSpec(
            epsilon=0.5, sigma2=1.0, structure="scalar"
        ),
        "paper_code small (a = 0.02, mu = 0.02)": NoiseSpec.paper_code(add=0.02, mult=0.02),
        "paper_code high (a = 0.05, mu = 0.02)": NoiseSpec.paper_code(add=0.05, mult=0.02),
    }
    rows = []
    for name, noise in settings.items():
        h = rollout(params, xs, noise=noise, generator=g)
        loss = float(torch.nn.functional.cross_entropy(readout(params, h), ys))
        row = {
            "setting": name,
            "rms_state_change": float((h - clean).pow(2).mean().sqrt()),
            "loss_change": loss - clean_loss,
        }
        if noise.convention == "paper_code":
            row["sde_equivalent_eps_sigma1"] = paper_code_to_sde(noise, args.dt).target.additive
        rows.append(row)
    result = {
        "data": f"sklearn digits, {len(xs)} sequences of T = {xs.shape[1]} pixels",
        "hidden_size": H,
        "dt": args.dt,
        "clean_state_norm_mean": float(clean.norm(dim=1).mean()),
        "clean_loss": clean_loss,
        "noisy": rows,
        "seconds": time.perf_counter() - t0,
    }
    if args.json:
        emit_json(result)
        return 0
    print(f"nrnn demo: random Lipschitz-parametrized NRNN, H = {H}, dt = {args.dt}")
    print(f"data: {result['data']}")
    print(
        f"clean rollout: mean |h_T| = {result['clean_state_norm_mean']:.4f}, "
        f"cross-entropy of a random readout = {clean_loss:.4f}"
    )
    print(f"{'noise':<48} {'rms |h_T - clean|':>18} {'loss change':>12}")
    for row in rows:
        print(f"{row['setting']:<48} {row['rms_state_change']:>18.4f} {row['loss_change']:>12.4f}")
    for row in rows:
        if "sde_equivalent_eps_sigma1" in row:
            print(
                f"  {row['setting']}: additive part = sde noise with eps*sigma1 = "
                f"{row['sde_equivalent_eps_sigma1']:.3f}"
            )
    print(f"done in {result['seconds']:.2f} s")
    return 0
