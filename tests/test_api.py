"""Package-level invariants: explicit public API, one-way imports (CONVENTIONS.md §1-2)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import nrnn_theory


def _modules():
    for info in pkgutil.walk_packages(nrnn_theory.__path__, "nrnn_theory."):
        yield info.name


def test_every_public_name_exists():
    for name in nrnn_theory.__all__:
        assert hasattr(nrnn_theory, name), name


def test_public_modules_declare_all():
    for name in _modules():
        if any(part.startswith("_") for part in name.split(".")):
            continue
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        for item in module.__all__:
            assert hasattr(module, item), f"{name}.__all__ lists missing {item}"


def test_core_never_imports_the_training_layer():
    root = Path(nrnn_theory.__file__).parent
    allowed = {"cli.py"}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        # The CLI and the experiment layer sit above both the core and train/.
        if rel.parts[0] in ("train", "_cli", "experiments") or rel.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("nrnn_theory.train"), f"{rel} imports train"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("nrnn_theory.train"), f"{rel} imports train"


def test_every_result_record_is_a_frozen_dataclass():
    import dataclasses

    from nrnn_theory import results

    records = [
        obj
        for obj in vars(results).values()
        if isinstance(obj, type) and issubclass(obj, results.Result)
    ]
    assert len(records) > 10
    for cls in records:
        assert "__dataclass_fields__" in vars(cls), f"{cls.__name__} is not a dataclass"
        assert cls.__dataclass_params__.frozen, f"{cls.__name__} is not frozen"
        assert dataclasses.fields(cls) or cls is results.Result


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _private_imports(path: Path) -> list[str]:
    """``module._name`` for every underscore name ``path`` imports from another module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("nrnn_theory")
        ):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                # A private *module* (``from nrnn_theory import _contract``) is a shared
                # helper module, which is allowed; a private *name* inside a module is not.
                is_module = (
                    importlib.util.find_spec(full) is not None
                    if _is_package(node.module)
                    else False
                )
                if alias.name.startswith("_") and not alias.name.startswith("__") and not is_module:
                    found.append(full)
    return found


#: Crossings that predate the contract module; issue 17 removes them. The list may
#: only shrink: a new crossing fails the test below.
_KNOWN_PRIVATE_IMPORTS = {
    "nrnn_theory.train.models._noise_from_config",
    "nrnn_theory.train.models._noise_to_config",
}


def test_no_module_imports_another_modules_private_name():
    # A leading underscore means "this module only" (CONVENTIONS.md §11): shared helpers
    # get public names in a private module (e.g. nrnn_theory._contract.check_xs).
    root = Path(nrnn_theory.__file__).parent
    seen = set()
    for path in root.rglob("*.py"):
        for name in _private_imports(path):
            seen.add(name)
            assert name in _KNOWN_PRIVATE_IMPORTS, f"{path.relative_to(root)} imports {name}"
    stale = _KNOWN_PRIVATE_IMPORTS - seen
    assert not stale, f"remove from _KNOWN_PRIVATE_IMPORTS: {sorted(stale)}"
