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
    """``module._name`` for every underscore name ``path`` takes from another module.

    Both ``from nrnn_theory.x import _name`` and ``import nrnn_theory.x as m`` (or
    ``from nrnn_theory import x``) followed by ``m._name`` count.
    """
    found = []
    tree = ast.parse(path.read_text())
    modules: dict[str, str] = {}  # local name -> nrnn_theory module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nrnn_theory") and alias.asname:
                    modules[alias.asname] = alias.name
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("nrnn_theory")
        ):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                # A private *module* (``from nrnn_theory import _contract``) is a shared
                # helper module, which is allowed; a private *name* inside a module is not.
                is_module = _is_package(node.module) and importlib.util.find_spec(full) is not None
                if is_module:
                    modules[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(full)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{modules[node.value.id]}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_name():
    # A leading underscore means "this module only" (CONVENTIONS.md §11): shared helpers
    # get public names, in a private module (e.g. nrnn_theory._contract.check_xs) or in
    # the module that owns the concept (package-internal: not in its ``__all__``).
    root = Path(nrnn_theory.__file__).parent
    found = [
        f"{path.relative_to(root)} imports {name}"
        for path in sorted(root.rglob("*.py"))
        for name in _private_imports(path)
    ]
    assert not found, found


def test_private_import_check_catches_both_forms(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "from nrnn_theory.attacks import _project\n"
        "import nrnn_theory.stability as st\n"
        "from nrnn_theory import robustness\n"
        "from nrnn_theory import _contract\n"
        "st._Model, robustness._wilson, _contract.check_xs\n"
    )
    assert sorted(_private_imports(path)) == [
        "nrnn_theory.attacks._project",
        "nrnn_theory.robustness._wilson",
        "nrnn_theory.stability._Model",
    ]
