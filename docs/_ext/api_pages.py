"""Generate the API reference pages from a list of public modules.

``conf.py`` lists the documented modules in ``api_modules``. For each module this
extension writes one page (its docstring and a table of its public names) and, for
each public object, one autodoc page under its *canonical* name: the first listed
module whose ``__all__`` exports it. ``nrnn_theory.dynamics.rollout`` and
``nrnn_theory.rollout`` are the same function, documented once as
``nrnn_theory.rollout``; the ``nrnn_theory.dynamics`` page links to it.

A reference written with another public path of a documented object (say
``:func:`nrnn_theory.dynamics.rollout``` or a name relative to the current module) is
resolved to the canonical page by the ``missing-reference`` handler below, so
docstrings may cite an object by any path it is importable from.

Pages are written only when their text changes, so incremental builds stay
incremental. The output folder is git-ignored.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging


logger = logging.getLogger(__name__)

KIND_TITLES = {
    "class": "Classes",
    "exception": "Exceptions",
    "function": "Functions",
    "data": "Constants and registries",
}
DIRECTIVES = {
    "class": "autoclass",
    "exception": "autoexception",
    "function": "autofunction",
    "data": "autodata",
}


@dataclass(frozen=True)
class Entry:
    module: str  # the documented module exporting it
    name: str  # the name in that module's __all__
    canonical: str  # full canonical name, e.g. nrnn_theory.rollout
    kind: str  # class, exception, function or data


def _is_type_alias(obj: object) -> bool:
    """A ``typing`` alias such as ``Callable[[...], Tensor]``: documented as data."""
    return type(obj).__module__ == "typing"


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj) and (inspect.isroutine(obj) or not _is_type_alias(obj)):
        return "function"
    return "data"


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        raise ValueError(f"api_modules: {module.__name__} has no __all__")
    return [n for n in names if not n.startswith("_")]


@dataclass
class Index:
    """Where each public object is documented."""

    by_module: dict[str, list[Entry]]
    paths: dict[str, str]  # every exported path (module.name) -> canonical name
    ids: dict[int, str]  # id(object) -> canonical name, for objects with an identity
    homes: dict[str, list[str]]  # canonical name -> modules to resolve its docstring in
    keep_alive: list[object]


def collect(modules: list[str]) -> Index:
    """Entries per module, and the maps that find an object's canonical page."""
    index = Index({}, {}, {}, {}, [])
    for modname in modules:
        module = importlib.import_module(modname)
        entries = []
        for name in _public_names(module):
            obj = getattr(module, name)
            index.keep_alive.append(obj)
            # Immutable data (strings, numbers, tuples) may be shared by identity
            # between unrelated names; only objects with their own identity are merged.
            shareable = _kind(obj) != "data" or isinstance(obj, dict | list)
            key = id(obj)
            if shareable and key in index.ids:
                canonical = index.ids[key]
            else:
                canonical = f"{modname}.{name}"
                if shareable:
                    index.ids[key] = canonical
            index.paths[f"{modname}.{name}"] = canonical
            homes = index.homes.setdefault(canonical, [])
            defined_in = getattr(obj, "__module__", None)
            for home in (defined_in, modname):
                if isinstance(home, str) and home not in homes:
                    homes.append(home)
            entries.append(Entry(modname, name, canonical, _kind(obj)))
        index.by_module[modname] = entries
    return index


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def module_page(modname: str, entries: list[Entry]) -> str:
    lines = [_title(modname), f".. automodule:: {modname}\n   :no-members:\n"]
    own = [e for e in entries if e.canonical == f"{modname}.{e.name}"]
    for kind, heading in KIND_TITLES.items():
        group = [e for e in entries if e.kind == kind]
        if not group:
            continue
        lines.append(f".. rubric:: {heading}\n")
        lines.append(".. autosummary::\n   :nosignatures:\n")
        # autosummary wants names of the page's own module unqualified
        lines.extend(
            f"   {e.name}" if e.canonical == f"{modname}.{e.name}" else f"   ~{e.canonical}"
            for e in group
        )
        lines.append("")
    if own:
        lines.append(".. toctree::\n   :hidden:\n")
        lines.extend(f"   {e.canonical}" for e in own)
        lines.append("")
    return "\n".join(lines)


def object_page(entry: Entry) -> str:
    modname, _, name = entry.canonical.rpartition(".")
    directive = DIRECTIVES[entry.kind]
    # The short name as the title (the signature below shows the full path); long
    # dotted titles do not wrap in the theme's headings.
    body = [_title(name), f".. currentmodule:: {modname}\n", f".. {directive}:: {name}"]
    if entry.kind in ("class", "exception"):
        body.append("   :members:\n   :inherited-members:\n   :show-inheritance:")
    elif entry.kind == "data":
        body.append("   :no-value:")
    return "\n".join(body) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def generate(app: Sphinx) -> None:
    modules = list(app.config.api_modules)
    out = Path(app.srcdir) / app.config.api_output_dir
    index = collect(modules)
    # kept on the application, not the environment: the environment is pickled
    app.nrnn_api_index = index  # type: ignore[attr-defined]
    wanted = set()
    for modname, entries in index.by_module.items():
        path = out / f"{modname}.rst"
        _write_if_changed(path, module_page(modname, entries))
        wanted.add(path.name)
        for entry in entries:
            if entry.canonical == f"{modname}.{entry.name}":
                path = out / f"{entry.canonical}.rst"
                _write_if_changed(path, object_page(entry))
                wanted.add(path.name)
    for stale in out.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    # The reference's table of contents, in the order of api_modules.
    # Absolute docnames, so that the file can be included from any page.
    prefix = "/" + str(Path(app.config.api_output_dir).as_posix()).strip("/")
    toc = [".. toctree::", "   :maxdepth: 1", ""] + [f"   {prefix}/{m}" for m in modules]
    _write_if_changed(out / "modules.rst.txt", "\n".join(toc) + "\n")


def _lookup(path: str) -> object | None:
    """The object a dotted path names, importing its longest module prefix."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _canonical(index: Index, path: str) -> str | None:
    if path in index.paths:
        return index.paths[path]
    obj = _lookup(path)
    if obj is not None and id(obj) in index.ids:
        return index.ids[id(obj)]
    head, _, attr = path.rpartition(".")
    if head:
        # a member of a documented class, e.g. FitHistory.to_dict
        owner = index.paths.get(head)
        if owner is None:
            owner_obj = _lookup(head)
            owner = index.ids.get(id(owner_obj)) if owner_obj is not None else None
        if owner is not None:
            return f"{owner}.{attr}"
    return None


def resolve_reexport(app: Sphinx, env, node, contnode):
    """Resolve a Python reference written with a non-canonical path of a public object.

    The target is tried as written, relative to the current module and class, and
    relative to the modules of the object whose page it is on (a docstring written in
    ``nrnn_theory.robustness`` may say ``:data:`PERTURBATIONS``` while the function is
    documented as ``nrnn_theory.comparison_table``).
    """
    if node.get("refdomain") != "py":
        return None
    index: Index | None = getattr(app, "nrnn_api_index", None)
    if index is None:
        return None
    target = node.get("reftarget", "").lstrip(".~")
    module, klass = node.get("py:module"), node.get("py:class")
    contexts = []
    if module and klass:
        contexts.append(f"{module}.{klass}")
    if module:
        contexts.append(module)
    page_object = node["refdoc"].rpartition("/")[2]
    contexts.extend(index.homes.get(page_object, []))
    candidates = [f"{c}.{target}" for c in contexts] + [target]
    domain = env.get_domain("py")
    for candidate in candidates:
        canonical = _canonical(index, candidate)
        if canonical is None or canonical == target and candidate == target:
            continue
        newnode = node.deepcopy()
        newnode["reftarget"] = canonical
        newnode["refspecific"] = False
        newnode["py:module"] = None
        newnode["py:class"] = None
        resolved = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], canonical, newnode, contnode
        )
        if resolved is None:
            # the role may not match the object kind (e.g. :func: on a class)
            found = domain.resolve_any_xref(
                env, node["refdoc"], app.builder, canonical, newnode, contnode
            )
            resolved = found[0][1] if found else None
        if isinstance(resolved, nodes.Element):
            return resolved
    return None


def _public_bases(app, name, obj, options, bases: list) -> None:
    """Show public base classes only: a private base is replaced by its own bases."""
    i = 0
    while i < len(bases):
        base = bases[i]
        if getattr(base, "__name__", "").startswith("_") and base is not object:
            bases[i : i + 1] = [b for b in base.__bases__ if b is not object]
            continue
        i += 1


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Inherited members are documented only when the package defines them.

    Result records inherit ``to_dict`` from the package's ``Result`` base, which belongs
    in their documentation; the hundred methods an ``nn.Module`` subclass inherits
    from torch do not.
    """
    if skip or what not in ("class", "exception"):
        return None
    target = obj.fget if isinstance(obj, property) else obj
    if not inspect.isroutine(target):
        return None
    home = getattr(target, "__module__", None)
    if not (isinstance(home, str) and home.startswith("nrnn_theory")):
        return True
    # An override without a docstring of its own (``extra_repr``, a subclass's
    # ``config``) would show its parent's text under its own name: the parent documents it.
    if getattr(target, "__doc__", None) is None:
        return True
    return None


def setup(app: Sphinx) -> dict:
    app.add_config_value("api_modules", [], "env")
    app.add_config_value("api_output_dir", "api/generated", "env")
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve_reexport)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
