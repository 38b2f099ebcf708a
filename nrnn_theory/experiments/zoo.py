"""The model zoo of the reproduction and the presets that size it.

The zoo compares, on one task and with the same seeds, the noisy RNN at the two noise
levels of the authors' public tuning (docs/theory/experiments.md: ``paper_code`` convention,
additive level ``a`` = 0.02 or 0.05, multiplicative level ``mu`` = 0.02) *as the authors
run it*, with a learned per-unit step (their ``solver='noisy'`` always learns it);
its **matched twin**, the same architecture with the same learned step trained without
noise, so that "noise at equal parametrization" is one comparison; the fixed-step
noise-free model (Lipschitz RNN), so that "the learned step" is another; the
fixed-step architecture trained without noise but with the explicit small-noise
regularizer of docs/theory/regularizer.md in its loss; and four baselines (Antisymmetric RNN, coRNN,
LSTM, GRU).

The learned step starts at the preset's ``dt`` (0.1). Measured on digits (H = 32, 100
epochs, one seed): started at the authors' 0.01 it crosses zero early in training in
some units, started at 0.1 it trains at least as well (a few units still end with a
step <= 0, which :func:`nrnn_theory.check_step` flags; docs/theory/conventions.md).

A :class:`Preset` fixes everything that sets the cost: tasks, seeds, hidden size,
epochs and the sizes of each analysis. Every member is trained with validation-based
model selection (the best validation epoch's weights are analysed). ``quick`` trains the
four core models on digits; ``standard`` adds the explicit-regularizer model and the
baselines and more tasks; ``full`` is meant for a GPU machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nrnn_theory._types import NoiseSpec


__all__ = [
    "MODEL_LABELS",
    "PRESETS",
    "ZOO",
    "Preset",
    "ZooMember",
    "member_config",
    "reference_noise",
    "train_member",
]


@dataclass(frozen=True)
class ZooMember:
    """One model of the zoo.

    Attributes
    ----------
    name : str
        Key used in result names and figures.
    model : str
        Registry name of :data:`nrnn_theory.train.MODELS`.
    options : dict
        Keyword arguments of the model class (besides the sizes).
    noise : NoiseSpec or None
        Noise injected in training (removed at inference).
    explicit_reg : float
        Weight of the explicit regularizer penalty (0: none).
    role : str
        What the model is in the comparison.
    """

    name: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    noise: NoiseSpec | None = None
    explicit_reg: float = 0.0
    role: str = ""


_SMALL = NoiseSpec.paper_code(add=0.02, mult=0.02)
_HIGH = NoiseSpec.paper_code(add=0.05, mult=0.02)
_LIPSCHITZ = {"beta": 0.75, "gamma_A": 0.001, "gamma_W": 0.001}
_LEARNED = {**_LIPSCHITZ, "learn_step": True}

#: The zoo, in report order.
ZOO: dict[str, ZooMember] = {
    m.name: m
    for m in (
        ZooMember(
            "nrnn_small",
            "nrnn",
            _LEARNED,
            _SMALL,
            role="noisy RNN, a = mu = 0.02, learned per-unit step (the authors' configuration)",
        ),
        ZooMember(
            "nrnn_high",
            "nrnn",
            _LEARNED,
            _HIGH,
            role="noisy RNN, a = 0.05, mu = 0.02, learned per-unit step",
        ),
        ZooMember(
            "nrnn_step",
            "nrnn",
            _LEARNED,
            None,
            role="matched twin: same architecture and learned step, no noise",
        ),
        ZooMember(
            "lipschitz",
            "lipschitz",
            _LIPSCHITZ,
            role="same architecture, fixed step, no noise (the learned step's control)",
        ),
        ZooMember(
            "explicit_reg",
            "nrnn",
            _LIPSCHITZ,
            None,
            explicit_reg=1.0,
            role="no noise; loss + eps^2/2 (Q + R) of the small noise (docs/theory/regularizer.md)",
        ),
        ZooMember("antisymmetric", "antisymmetric", role="baseline (Chang et al. 2019)"),
        ZooMember("cornn", "cornn", role="baseline (Rusch and Mishra 2021)"),
        ZooMember("lstm", "lstm", role="baseline"),
        ZooMember("gru", "gru", role="baseline"),
    )
}


#: Display name of each model of the zoo (tables, figures, the report).
MODEL_LABELS: dict[str, str] = {
    "nrnn_small": "NRNN (small noise)",
    "nrnn_high": "NRNN (high noise)",
    "nrnn_step": "learned step, no noise",
    "lipschitz": "Lipschitz RNN (fixed step, no noise)",
    "explicit_reg": "explicit regularizer",
    "antisymmetric": "Antisymmetric RNN",
    "cornn": "coRNN",
    "lstm": "LSTM",
    "gru": "GRU",
}


def reference_noise() -> NoiseSpec:
    """The noise at which every model's regularizer and noisy exponents are evaluated:
    the small training noise (``paper_code``, a = mu = 0.02), so values compare across
    the zoo."""
    return _SMALL


@dataclass(frozen=True)
class Preset:
    """Sizes of one reproduction run.

    Attributes
    ----------
    name : str
    tasks : tuple of str
        Task names of :func:`nrnn_theory.train.load_task`.
    models : tuple of str
        Zoo members trained.
    seeds : tuple of int
        Seeds (paired across models).
    hidden_size, epochs, batch_size, lr : training.
    lr_schedule : tuple of int, optional
        Epochs at which the learning rate is multiplied by 0.1; unset (``None``): at
        ``floor(0.9 * epochs)`` (:func:`nrnn_theory.train.default_lr_schedule`).
    dt : float
        Step of the NRNN family (the initial value of a learned step).
    patience : int, optional
        Early stopping (:class:`nrnn_theory.train.FitSettings`); ``None``: all epochs.
    reg_examples : int
        Examples of each batch on which the explicit regularizer penalty is computed.
    n_eval : int
        Test examples for the regularizer, Hessian, Lyapunov and robustness analyses.
    n_margin : int
        Test examples for the (expensive) empirical margins.
    n_certified : int
        Test examples for the CROWN certified l_inf radius (0: not computed).
    n_probes, mc_pairs, lyap_k, lyap_trajectories, robust_draws : analysis sizes.
    study_preset : str
        Preset of the theory-only studies.
    """

    name: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    hidden_size: int
    epochs: int
    batch_size: int = 128
    lr: float = 0.01
    lr_schedule: tuple[int, ...] | None = None
    dt: float = 0.1
    patience: int | None = None
    reg_examples: int = 16
    n_eval: int = 128
    n_margin: int = 48
    n_certified: int = 0
    n_probes: int = 20
    mc_pairs: int = 16
    lyap_k: int = 4
    lyap_trajectories: int = 16
    robust_draws: int = 3
    study_preset: str = "quick"

    def with_tasks(self, tasks: tuple[str, ...]) -> Preset:
        """The same preset on other tasks.

        Parameters
        ----------
        tasks : tuple of str
            Task names as :func:`~nrnn_theory.train.load_task` accepts them.

        Returns
        -------
        Preset
        """
        return dataclasses.replace(self, tasks=tuple(tasks))


_ALL = tuple(ZOO)
#: The models every claim needs: the noisy ones, their matched twin, the fixed-step one.
_CORE = ("nrnn_small", "nrnn_high", "nrnn_step", "lipschitz")
PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke",
        ("digits",),
        ("nrnn_small", "lipschitz", "explicit_reg", "lstm"),
        (0, 1),
        hidden_size=8,
        epochs=1,
        reg_examples=4,
        n_eval=24,
        n_margin=8,
        n_probes=4,
        mc_pairs=4,
        lyap_k=2,
        lyap_trajectories=4,
        robust_draws=1,
        study_preset="smoke",
    ),
    # quick: the four core models on digits, sized from single-thread measurements
    # (benchmarks/README.md, "Reproduction presets, issue 12"): at H = 64 and 100 epochs
    # (decay at 90) a member costs 30-56 s of training and ~33 s of analysis (CPU, one
    # thread), 3 seeds ~ 7-8 minutes on 2 worker processes. H = 32 stays below 0.89.
    "quick": Preset(
        "quick",
        ("digits",),
        _CORE,
        (0, 1, 2),
        hidden_size=64,
        epochs=100,
        n_eval=128,
        n_margin=32,
        n_certified=8,
        n_probes=10,
        mc_pairs=8,
        robust_draws=2,
    ),
    # standard: every member (the explicit-regularizer model and the baselines too) on
    # digits, 150 epochs (the noisy model gains ~3 points of clean accuracy over 100
    # epochs), larger analyses. Longer sequences do not fit its 2-hour budget on 2 cores:
    # a T = 784 MNIST-5k epoch costs ~50x a digits epoch, and the CROWN radius grows
    # like T^2 (ucr:ArrowHead, T = 251: ~15x per example); pass --task for them.
    "standard": Preset(
        "standard",
        ("digits",),
        _ALL,
        (0, 1, 2),
        hidden_size=64,
        epochs=150,
        n_eval=256,
        n_margin=96,
        n_certified=16,
        n_probes=50,
        mc_pairs=64,
        lyap_k=8,
        study_preset="standard",
    ),
    "full": Preset(
        "full",
        ("mnist", "pmnist", "ecg5000"),
        _ALL,
        (0, 1, 2, 3, 4),
        hidden_size=128,
        epochs=100,
        batch_size=128,
        lr=0.001,
        lr_schedule=(90,),
        dt=0.01,
        reg_examples=32,
        n_eval=1000,
        n_margin=200,
        n_probes=100,
        mc_pairs=256,
        lyap_k=16,
        lyap_trajectories=64,
        robust_draws=5,
        study_preset="full",
    ),
}


def member_config(member: ZooMember, preset: Preset, data) -> dict[str, Any]:
    """The :func:`nrnn_theory.train.build_model` configuration of ``member`` on ``data``."""
    config: dict[str, Any] = {
        "model": member.model,
        "input_size": int(data.inputs("train").shape[-1]),
        "hidden_size": preset.hidden_size,
        "num_classes": int(data.num_classes),
        **member.options,
    }
    if member.model in ("nrnn", "lipschitz", "antisymmetric"):
        config["dt"] = preset.dt
    if member.model == "nrnn":
        config["noise"] = None if member.noise is None else member.noise.to_dict()
    return config


def train_member(
    member: ZooMember,
    preset: Preset,
    data,
    *,
    seed: int,
    run_dir: str | Path,
    device: str = "auto",
    quiet: bool = True,
):
    """Train (or resume training of) one zoo member; returns ``(model, history)``.

    ``run_dir`` holds the checkpoints; if it already has some, training resumes from
    the newest one (finished epochs are not redone). A folder left without a
    checkpoint by a run killed at its start is started again from scratch. The returned
    model has the weights of the best validation epoch (``history.best_epoch``; model
    selection of :class:`~nrnn_theory.train.FitSettings`).

    Raises
    ------
    TrainingDivergedError
        The member's training diverged (deterministically: resuming diverges again).
    """
    from nrnn_theory.train import FitSettings, build_model, fit

    run_dir = Path(run_dir)
    config = member_config(member, preset, data)
    model = build_model(config, generator=torch.Generator().manual_seed(seed))
    penalty: Callable | None = None
    if member.explicit_reg:
        from nrnn_theory.train.penalties import explicit_regularizer_penalty

        penalty = explicit_regularizer_penalty(
            reference_noise(), weight=member.explicit_reg, max_examples=preset.reg_examples
        )
    resume = run_dir.exists()  # fit resumes a checkpoint or restarts its own leftovers
    settings = FitSettings(
        epochs=preset.epochs,
        batch_size=preset.batch_size,
        lr=preset.lr,
        lr_schedule=preset.lr_schedule,
        seed=seed,
        patience=preset.patience,
        restore_best=True,
    )
    history = fit(
        model,
        data,
        settings,
        device=device,
        penalty=penalty,
        out_dir=run_dir,
        resume=resume,
        quiet=quiet,
        keep_checkpoints=1,
    )
    return model, history
