"""Write docs/api.md, the API reference, from the public names and their docstrings.

Run ``.venv/bin/python docs/gen_api.py`` after changing a public signature or docstring;
``tests/test_docs.py`` fails while docs/api.md differs from what this script renders. It uses
only the standard library (no MkDocs plugin), so the docs build needs nothing but mkdocs.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import itertools
import pprint
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"

GROUPS: list[tuple[str, list[str]]] = [
    ("Jobs", ["RecurringJob", "TriggerableJob", "DistributedJob", "Signal"]),
    ("The host", ["JobHost", "JobTrigger", "JobStatus", "NextExecution", "INFINITE"]),
    ("Distributed settings", ["DistributedJobSettings"]),
    ("Gates", ["ServerRole", "IgnoreReason", "MainDom"]),
    ("Cancellation", ["CancellationToken", "JobCancelled"]),
    ("Time", ["Clock", "SystemClock"]),
    (
        "Notifications",
        [
            "JobNotification", "JobStarting", "JobStarted", "JobExecuting", "JobExecuted",
            "JobIgnored", "JobFailed", "JobCanceled", "JobStopping", "JobStopped",
            "DistributedJobClaimed", "DistributedJobLeaseLost", "ServerRoleChanged",
            "Subscription",
        ],
    ),
]  # fmt: skip
MODULES = [
    "recurjobs.testing",
    "recurjobs.flask",
    "recurjobs.dashboard",
    "recurjobs.prometheus",
    "recurjobs.sql",
    "recurjobs.cli",
]
CLI_NAMES = ["main", "parse_duration", "load_host"]


class _Raw:
    """Shows an annotation string as written (no quotes) inside a signature."""

    def __init__(self, text: object) -> None:
        self.text = text if isinstance(text, str) else inspect.formatannotation(text)

    def __repr__(self) -> str:
        return str(self.text)


def signature(name: str, obj: Any, *, returns: bool = True) -> str:
    """``name(params) -> ret`` with annotations and defaults as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{name}(...)"
    parts: list[str] = []
    star = False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
        star = star or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_Raw(p.annotation)!r}"
        if p.default is not p.empty:
            default = p.default
            if isinstance(default, enum.Enum):
                default = _Raw(f"{type(default).__name__}.{default.name}")
            text += f" = {default!r}" if p.annotation is not p.empty else f"={default!r}"
        parts.append(text)
    ret = sig.return_annotation
    tail = f" -> {_Raw(ret)!r}" if returns and ret is not sig.empty else ""
    text = f"{name}({', '.join(parts)}){tail}"
    if len(text) <= 96:
        return text
    inner = ",\n    ".join(parts)
    return f"{name}(\n    {inner},\n){tail}"


def prose(doc: str | None) -> str:
    """A docstring as Markdown: reST roles and double backquotes become code spans."""
    if not doc:
        return ""
    text = inspect.cleandoc(doc)
    text = re.sub(r":(?:class|meth|func|data|attr|mod|exc):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return text + "\n"


def attribute_docs(obj: Any, *, values: bool = False) -> dict[str, str]:
    """Docstrings written as a string right after an assignment in a module or class body
    (with ``values``: the source text of each assigned value instead)."""
    try:
        source = inspect.getsource(obj)
        tree = ast.parse(source)
    except (OSError, TypeError):
        return {}
    body = tree.body
    if isinstance(obj, type) and body and isinstance(body[0], ast.ClassDef):
        body = body[0].body
    found: dict[str, str] = {}
    for first, second in itertools.pairwise(body):
        target = first.targets[0] if isinstance(first, ast.Assign) else None
        if isinstance(first, ast.AnnAssign):
            target = first.target
        is_doc = isinstance(second, ast.Expr) and isinstance(second.value, ast.Constant)
        if values and isinstance(target, ast.Name) and getattr(first, "value", None):
            found[target.id] = ast.get_source_segment(source, first.value) or ""  # type: ignore[attr-defined]
        elif isinstance(target, ast.Name) and is_doc:
            found[target.id] = str(second.value.value)  # type: ignore[attr-defined]
    return found


def defining_module(obj: Any, fallback: ModuleType) -> ModuleType:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return module if module is not None else fallback


def members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` itself, in source order."""
    kinds = (property, staticmethod, classmethod)
    return [
        (name, value)
        for name, value in vars(cls).items()
        if not name.startswith("_") and (isinstance(value, kinds) or inspect.isfunction(value))
    ]


def render_class(qualname: str, cls: type) -> list[str]:
    out = [f"### `{qualname}`", ""]
    if issubclass(cls, enum.Enum):
        notes = attribute_docs(cls)
        out += ["```python", f"class {cls.__name__}({cls.__bases__[0].__name__})", "```", ""]
        out += [prose(cls.__doc__)]
        for member in cls:
            note = notes.get(member.name, "")
            out.append(f"- `{member.name}` = `{member.value!r}`" + (f": {note}" if note else ""))
        return [*out, ""]
    head = f"class {signature(cls.__name__, cls, returns=False)}"
    out += ["```python", head, "```", "", prose(cls.__doc__)]
    for name, value in members(cls):
        if isinstance(value, property):
            out += [f"#### `{cls.__name__}.{name}` (property)", "", prose(value.__doc__)]
            continue
        func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        out += [f"#### `{cls.__name__}.{name}()`", "", "```python"]
        out += [signature(name, func), "```", "", prose(func.__doc__)]
    return out


def render_name(qualname: str, obj: Any, module: ModuleType) -> list[str]:
    if isinstance(obj, type):
        return render_class(qualname, obj)
    if callable(obj):
        short = qualname.rsplit(".", 1)[-1]
        return [f"### `{qualname}()`", "", "```python", signature(short, obj), "```", "",
                prose(obj.__doc__)]  # fmt: skip
    short = qualname.rsplit(".", 1)[-1]
    notes, sources = attribute_docs(module), attribute_docs(module, values=True)
    for candidate in list(sys.modules.values()):  # it may be defined in a private module
        if candidate is not None and getattr(candidate, short, None) is obj:
            notes = attribute_docs(candidate) | notes
            sources = attribute_docs(candidate, values=True) | sources
    value = pprint.pformat(obj, sort_dicts=False, width=90) if isinstance(obj, dict) else None
    value = value or sources.get(short) or repr(obj)
    return [f"### `{qualname}`", "", "```python", f"{short} = {value}", "```", "",
            prose(notes.get(short))]  # fmt: skip


def render() -> str:
    """The whole API page."""
    import recurjobs

    lines = [
        "# API reference",
        "",
        "<!-- Generated by docs/gen_api.py from the docstrings; do not edit by hand. -->",
        "",
        "Everything listed here is public; modules and names starting with `_` are not.",
        "",
        "## `recurjobs`",
        "",
        prose(recurjobs.__doc__),
    ]
    listed = [n for _, names in GROUPS for n in names]
    groups = [*GROUPS, ("Other", [n for n in recurjobs.__all__ if n not in listed])]
    for title, names in groups:
        names = [n for n in names if n in recurjobs.__all__]
        if not names:
            continue
        lines += [f"## {title}", ""]
        for name in names:
            lines += render_name(f"recurjobs.{name}", getattr(recurjobs, name), recurjobs)
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", prose(module.__doc__)]
        names = CLI_NAMES if module_name == "recurjobs.cli" else list(module.__all__)
        for name in names:
            lines += render_name(f"{module_name}.{name}", getattr(module, name), module)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
