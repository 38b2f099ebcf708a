"""Start-up of the package and the ``nrnn`` command: what is imported, not how fast.

``nrnn --help``, ``nrnn CMD --help`` and ``nrnn --version`` must not import torch
(about 1-1.5 s on the build machines, most of the start-up); each check runs in a fresh
interpreter and reads ``sys.modules``. Timings live in ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest

import nrnn_theory
from nrnn_theory.cli import COMMANDS, SUMMARIES


def _heavy_modules(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it left imported."""
    probe = (
        f"{code}\nimport sys\n"
        "heavy = ('torch', 'numpy', 'scipy', 'sympy', 'matplotlib', 'nrnn_theory.dynamics',"
        " 'nrnn_theory.results', 'nrnn_theory._types', 'nrnn_theory.train')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import nrnn_theory",
        "import nrnn_theory._version",
        "import nrnn_theory.cli",
        "from nrnn_theory.cli import build_parser; build_parser(()).format_help()",
    ],
)
def test_imports_and_the_top_level_parser_do_not_import_torch(code):
    assert _heavy_modules(code) == []


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_do_not_import_torch(flag):
    code = (
        "from nrnn_theory.cli import main\n"
        "try:\n"
        f"    main([{flag!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert _heavy_modules(code) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_subcommand_help_does_not_import_torch(command):
    # the parsers are built from nrnn_theory._vocabulary; the numeric modules are
    # imported by the commands' run functions only
    code = (
        "from nrnn_theory.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
    )
    assert _heavy_modules(code) == []


def test_the_vocabulary_is_the_numeric_modules_own():
    from nrnn_theory import _types, _vocabulary, robustness, stability
    from nrnn_theory.experiments.zoo import PRESETS

    assert _vocabulary.CONVENTIONS == _types.CONVENTIONS == ("sde", "paper_code")
    assert _vocabulary.NOISE_STRUCTURES == _types.NOISE_STRUCTURES
    assert _vocabulary.ONE_SIDED_METHODS == stability.ONE_SIDED_METHODS
    assert _vocabulary.PERTURBATION_NAMES == tuple(robustness.PERTURBATIONS)
    assert _vocabulary.DEFAULT_GRIDS == robustness.DEFAULT_GRIDS
    assert _vocabulary.PRESET_NAMES == tuple(PRESETS)


def test_train_noise_defaults_are_paper_code_without_noise():
    from nrnn_theory import NoiseSpec
    from nrnn_theory.cli import build_parser

    args = build_parser(["train"]).parse_args(["train"])
    spec = NoiseSpec.paper_code()
    assert (args.add, args.mult) == (spec.additive, spec.multiplicative) == (0.0, 0.0)
    assert (args.convention, args.noise_structure) == (spec.convention, spec.structure)


def test_a_subcommand_builds_only_its_own_arguments():
    # "nrnn demo ..." imports the demo module and no other subcommand module.
    code = (
        "from nrnn_theory.cli import build_parser\n"
        "import sys\n"
        "build_parser(['demo'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('nrnn_theory._cli.') "
        "and not m.endswith('._common')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['nrnn_theory._cli.demo']"


def test_summaries_are_the_subcommands_help():
    assert list(SUMMARIES) == list(COMMANDS)
    for name, module in COMMANDS.items():
        assert SUMMARIES[name] == importlib.import_module(module).HELP, name


def test_lazy_names_are_the_defining_modules_objects():
    # Every re-exported name resolves (PEP 562) to the very object of the module that
    # defines it, and appears in dir(); unknown names still raise AttributeError.
    from nrnn_theory.lyapunov import lyapunov_spectrum

    assert nrnn_theory.lyapunov_spectrum is lyapunov_spectrum
    assert set(nrnn_theory.__all__) <= set(dir(nrnn_theory))
    for name in nrnn_theory.__all__:
        value = getattr(nrnn_theory, name)
        if callable(value):
            assert getattr(importlib.import_module(value.__module__), name) is value, name
    assert nrnn_theory.lyapunov.__name__ == "nrnn_theory.lyapunov"  # submodules too
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        nrnn_theory.not_a_name  # noqa: B018
