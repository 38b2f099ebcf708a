"""Package-level invariants: explicit public API, one-way imports.

The rules are listed in docs/contributing.md, *Rules the tests enforce*.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
import typing
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
    # A leading underscore means "this module only" (docs/contributing.md, *Rules the
    # tests enforce*): shared helpers get public names, in a private module (e.g.
    # nrnn_theory._contract.check_xs) or in the module that owns the concept
    # (package-internal: not in its ``__all__``).
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


def _classes_in(tp) -> list[type]:
    """The classes a type annotation names (through unions, tuples, lists, dicts)."""
    args = typing.get_args(tp)
    if args:
        return [c for a in args for c in _classes_in(a)]
    return [tp] if isinstance(tp, type) else []


def _mentions_any(tp) -> bool:
    return tp is typing.Any or any(_mentions_any(a) for a in typing.get_args(tp))


def _is_record(cls: type) -> bool:
    """A class of the package holding a result: a dataclass, a ``Result`` or anything
    with ``to_dict`` (a service object such as ``ResultStore`` is none of these)."""
    from nrnn_theory.results import Result

    return cls.__module__.startswith("nrnn_theory") and (
        dataclasses.is_dataclass(cls) or issubclass(cls, Result) or hasattr(cls, "to_dict")
    )


def record_problems(cls: type) -> list[str]:
    """Why ``cls`` is not a frozen dataclass with typed fields ([] if it is).

    A field typed ``Any`` is accepted only with a comment on its line that says why.
    """
    if not dataclasses.is_dataclass(cls):
        return [f"{cls.__qualname__} is not a dataclass"]
    problems = []
    if not cls.__dataclass_params__.frozen:
        problems.append(f"{cls.__qualname__} is not frozen")
    hints = typing.get_type_hints(cls)
    source = inspect.getsource(cls)
    for f in dataclasses.fields(cls):
        if _mentions_any(hints[f.name]):
            line = next(
                (ln for ln in source.splitlines() if ln.strip().startswith(f"{f.name}:")), ""
            )
            if "#" not in line:
                problems.append(f"{cls.__qualname__}.{f.name} is typed Any without a reason")
    return problems


def _public_functions():
    for name in ["nrnn_theory", *_modules()]:
        module = importlib.import_module(name)
        for item in getattr(module, "__all__", ()):
            obj = getattr(module, item)
            if inspect.isfunction(obj) and obj.__module__.startswith("nrnn_theory"):
                yield f"{obj.__module__}.{obj.__qualname__}", obj


def test_every_public_function_returns_frozen_typed_records():
    """A public function's result type, when it is a record of the package, is a frozen
    dataclass whose fields have real types (docs/contributing.md, *Rules the tests
    enforce*)."""
    seen: dict[type, list[str]] = {}
    # The CLI modules import the numeric types for annotations only (TYPE_CHECKING), so
    # that building a parser (``nrnn CMD --help``) does not import torch; their
    # annotations resolve against the package's public names.
    package_names = {name: getattr(nrnn_theory, name) for name in nrnn_theory.__all__}
    for qualname, fn in dict(_public_functions()).items():
        cli = fn.__module__.startswith("nrnn_theory._cli")
        # also: every annotation resolves
        hints = typing.get_type_hints(fn, localns=package_names if cli else None)
        for cls in _classes_in(hints.get("return")):
            if _is_record(cls):
                seen.setdefault(cls, []).append(qualname)
    assert len(seen) >= 25, sorted(c.__name__ for c in seen)
    problems = [p for cls in seen for p in record_problems(cls)]
    assert not problems, problems


@dataclasses.dataclass
class _Loose:
    values: typing.Any


@dataclasses.dataclass(frozen=True)
class _Justified:
    values: typing.Any  # Any: plain JSON data of any shape


class _Plain:  # a record that is not a dataclass at all
    def to_dict(self):
        return {}


def test_record_check_catches_unfrozen_and_untyped_records(monkeypatch):
    assert record_problems(_Loose) == [
        "_Loose is not frozen",
        "_Loose.values is typed Any without a reason",
    ]
    assert record_problems(_Justified) == []
    assert record_problems(int) == ["int is not a dataclass"]
    monkeypatch.setattr(_Plain, "__module__", "nrnn_theory.somewhere")
    assert _is_record(_Plain) and record_problems(_Plain) == ["_Plain is not a dataclass"]


def _top_level(tree: ast.Module):
    """The statements run at import time: the module body, into ``if``/``try`` blocks but
    not into functions or classes."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]


def _import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports at import time.

    An import inside a function defers a dependency to call time (a heavy optional
    module, or a check that needs the record it validates, as in
    ``_contract.check_params``); such an edge may point back without a cycle at import.
    """
    root = Path(nrnn_theory.__file__).parent
    names = set(_modules()) | {"nrnn_theory"}
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        edges = graph.setdefault(name, set())
        for node in _top_level(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in names else node.module for t in targets]
            edges.update(t for t in targets if t in names and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_import_graph_has_no_cycles():
    graph = _import_graph()
    assert len(graph) > 40 and "nrnn_theory.dynamics" in graph["nrnn_theory.lyapunov"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
