"""Check the hook docstrings and write ``docs/plugins.md`` from them: ``python -m ecgbench.hookdocs [--check]``.

The page is generated, never edited by hand: its hook reference is rendered
from ``ecgbench/hookspecs.py`` (signature, summary, when it runs, parameters,
return, example), grouped by the ``# --- SECTION ---`` comments of that file.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ecgbench import hookspecs

HOOK_PREFIX = "ecgbench_"
DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
REGENERATE = "python -m ecgbench.hookdocs"

_SECTION = re.compile(r"^# --- (?P<name>[\w ]+?) -+\s*$")


@dataclass(frozen=True)
class HookDoc:
    """One hook's docstring, split into the sections of the agreed format."""

    name: str
    signature: str
    summary: str
    when: str
    params: tuple[tuple[str, str, str], ...]  # (name, annotation, text)
    returns: str
    example: str


def hook_functions(module: ModuleType) -> dict[str, typing.Callable]:
    """The hook specs of ``module``, in source order."""
    return {name: fn for name, fn in vars(module).items() if name.startswith(HOOK_PREFIX) and inspect.isfunction(fn)}


def _annotation(value: object) -> str:
    if value is inspect.Parameter.empty:
        return ""
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature(fn: typing.Callable) -> str:
    """``name(param: type, ...) -> type`` exactly as written in the code."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {_annotation(p.annotation)}" if _annotation(p.annotation) else p.name for p in sig.parameters.values())
    returns = _annotation(sig.return_annotation)
    return f"{fn.__name__}({params})" + (f" -> {returns}" if returns else "")


def check_hook(name: str, fn: typing.Callable) -> list[str]:
    """What is wrong with one hook spec's docstring or annotations (empty when it follows the format)."""
    problems = []
    sig = inspect.signature(fn)
    for param in sig.parameters.values():
        annotation = _annotation(param.annotation)
        if not annotation:
            problems.append(f"{name}: parameter '{param.name}' has no type annotation")
        elif annotation in ("Any", "typing.Any"):
            problems.append(f"{name}: parameter '{param.name}' is annotated Any; give its real type")
    if not _annotation(sig.return_annotation):
        problems.append(f"{name}: no return annotation")
    doc = inspect.getdoc(fn)
    if not doc:
        return problems + [f"{name}: no docstring (see the format in ecgbench/hookspecs.py)"]
    paragraphs = doc.split("\n\n")
    if not paragraphs[0].strip() or paragraphs[0].startswith(("When it runs:", ":param", ":return")):
        problems.append(f"{name}: the docstring must start with a one-line summary")
    if not any(p.startswith("When it runs: ") for p in paragraphs):
        problems.append(f"{name}: no 'When it runs:' paragraph")
    documented = [key.removeprefix(":param ") for key, _ in _fields(doc.partition("Example::")[0]) if key.startswith(":param ")]
    expected = list(sig.parameters)
    if documented != expected:
        problems.append(f"{name}: ':param' lines document {documented}, the signature has {expected} (same names, same order)")
    if not re.search(r"^:return: \S", doc, re.M):
        problems.append(f"{name}: no ':return:' line")
    example = doc.split("Example::", 1)[1] if "Example::" in doc else ""
    if "@hookimpl" not in example or f"def {name}(" not in example:
        problems.append(f"{name}: no 'Example::' block with an @hookimpl implementation of {name}")
    return problems


def check_hookspecs(module: ModuleType = hookspecs) -> list[str]:
    """Every problem of every hook spec in ``module`` (empty when all follow the format)."""
    functions = hook_functions(module)
    if not functions:
        return [f"{module.__name__}: no hook specs named {HOOK_PREFIX}*"]
    return [problem for name, fn in functions.items() for problem in check_hook(name, fn)]


def check_documented_signatures(page: str, module: ModuleType = hookspecs) -> list[str]:
    """Hooks whose signature in the code does not appear, as code, in the docs page ``page``."""
    return [
        f"{name}: the docs page lacks the signature `{signature(fn)}`; regenerate it: {REGENERATE}"
        for name, fn in hook_functions(module).items()
        if f"`{signature(fn)}`" not in page
    ]


def _fields(body: str) -> list[tuple[str, str]]:
    """``(":param NAME" or ":return", text)`` per field line of ``body``, continuation lines joined."""
    fields: list[tuple[str, str]] = []
    for line in body.splitlines():
        line = line.strip()
        field = re.match(r"^(:param \w+|:return):\s*(.*)$", line)
        if field:
            fields.append((field.group(1), field.group(2)))
        elif fields and line and not fields[-1][1].endswith("\n"):
            fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line}")
        elif fields and not line:
            fields[-1] = (fields[-1][0], fields[-1][1] + "\n")  # a blank line ends the field
    return [(key, text.strip()) for key, text in fields]


def parse_hook(name: str, fn: typing.Callable) -> HookDoc:
    """Split a (checked) docstring into its sections."""
    doc = inspect.getdoc(fn) or ""
    body, _, example = doc.partition("Example::")
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
    when = next(p for p in paragraphs if p.startswith("When it runs: ")).removeprefix("When it runs: ")
    fields = dict(_fields(body))
    sig = inspect.signature(fn)
    params = tuple((p, _annotation(sig.parameters[p].annotation), fields[f":param {p}"]) for p in sig.parameters)
    return HookDoc(name, signature(fn), paragraphs[0], when, params, fields[":return"], inspect.cleandoc(example))


def sections(module: ModuleType = hookspecs) -> list[tuple[str, str, list[str]]]:
    """``(title, intro, hook names)`` per ``# --- TITLE ---`` comment block of the module's source."""
    out: list[tuple[str, str, list[str]]] = []
    intro: list[str] | None = None
    for line in inspect.getsource(module).splitlines():
        header = _SECTION.match(line)
        if header:
            intro = []
            out.append((header.group("name"), "", []))
        elif intro is not None and line.startswith("#"):
            intro.append(line.lstrip("#").strip())
            out[-1] = (out[-1][0], " ".join(intro), out[-1][2])
        else:
            intro = None
            hook = re.match(rf"def ({HOOK_PREFIX}\w+)\(", line)
            if hook and out:
                out[-1][2].append(hook.group(1))
    return out


def _md(text: str) -> str:
    """reST inline literals (double backquotes) as Markdown code."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def render_hook(hook: HookDoc) -> str:
    lines = [f"#### {hook.name}", "", f"`{hook.signature}`", "", _md(hook.summary), "", f"**When it runs:** {_md(hook.when)}", ""]
    lines += ["**Parameters:**", ""]
    lines += [f"- `{name}` (`{annotation}`): {_md(text)}" for name, annotation, text in hook.params]
    lines += ["", f"**Returns:** {_md(hook.returns)}", "", "```python", hook.example, "```", ""]
    return "\n".join(lines)


INTRO = """\
# Writing ecgbench plugins

<!-- Generated by `python -m ecgbench.hookdocs` from ecgbench/hookspecs.py; do not edit by hand. -->

Everything ecgbench runs is a plugin ([pluggy](https://pluggy.readthedocs.io)):
datasets, model families, compression strategies, device profiles, report
writers and executors. The built-ins in `plugins/` (import name
`ecgbench_plugins`) implement the hooks below exactly as a third-party
package does.

## Writing a plugin

A plugin is a Python module whose functions carry `@ecgbench.hookimpl` and are
named after a hook. Registration hooks receive a `register` callback, called
once per thing the plugin provides: a subclass of the kind's base class, all
exported from `ecgbench`: `Dataset` (yielding `Record`s), `ModelFamily`,
`Compressor` (with `ModelArtifact`, `StepOutcome`, `CompressionContext`),
`Reporter` or `SingleFileReporter`, and `Executor`; a device is a
`DeviceProfile` instance (usually `ecgbench.kinds.device.load_profile` of a
YAML file). A class sets `name` (the key suites use) and its settings as a
nested `Config(PluginConfig)` (a pydantic model that forbids unknown keys),
filled from the suite YAML. Errors meant for users subclass `EcgbenchError`
(`ConfigError`, `DatasetError`, `PluginError`, `CompressionError`).

```python
# ecgbench_random_prune.py
from ecgbench import Compressor, PluginConfig, StepOutcome, hookimpl

class RandomPrune(Compressor):
    name = "random_prune"

    class Config(PluginConfig):
        sparsity: float = 0.5

    def compress(self, artifact, ctx):
        ...
        return StepOutcome(artifact, {"sparsity": self.config.sparsity})

@hookimpl
def ecgbench_register_compressors(register):
    register(RandomPrune)
```

## Packaging it

Expose the module through the `ecgbench` entry-point group in the package's
`pyproject.toml`; after `pip install`, `ecgbench plugins` lists it with its
distribution and version, and suites can name what it registers:

```toml
[project.entry-points.ecgbench]
random_prune = "ecgbench_random_prune"
```

Plugins are loaded after the built-ins, and a hook implementation whose name
matches no hook fails loudly. Two plugins registering the same name is an
error naming both. Set `ECGBENCH_DISABLE_PLUGIN_AUTOLOAD=1` to load the
built-ins only. `tests/example_plugin/` is a complete example package.

## Testing it

Installing `ecgbench-harness` installs a pytest plugin (`pytest11` entry point
`ecgbench`, module `ecgbench.pytest_plugin`) whose fixtures build everything
in milliseconds:

| fixture | what it is |
| --- | --- |
| `plugin_manager` | a fresh plugin manager with the built-ins only (entry-point autoload off); register your plugin on it |
| `registry` | the registry built from `plugin_manager` (build your own with `build_registry` after registering) |
| `tiny_splits` | tiny separable train/val/test `DataSplits` at 100 Hz |
| `tiny_model` | a seeded, untrained two-layer `TinyNet` |
| `compression_context` | `(model, ctx)`: a TinyNet trained on `tiny_splits` and the `CompressionContext` a compressor receives for it |

```python
# test_random_prune.py: no conftest needed
import ecgbench_random_prune
from ecgbench import ModelArtifact
from ecgbench.registry import build_registry

def test_random_prune_masks_half_the_weights(plugin_manager, compression_context):
    plugin_manager.register(ecgbench_random_prune, name="random_prune")
    cls = build_registry(plugin_manager).get("compressors", "random_prune")
    model, ctx = compression_context
    outcome = cls(cls.Config(sparsity=0.5)).compress(ModelArtifact(model), ctx)
    kept = outcome.artifact.masks["conv1.weight"].mean().item()
    assert outcome.record == {"sparsity": 0.5} and 0.3 < kept < 0.7
```

The same helpers without pytest (`make_random_splits`, `make_signalset`,
`TinyNet`, `fast_recipe`, `make_context`) are in `ecgbench.testing`, with
`TinyDataset` and `TinyNetFamily`, a dataset and a model family to register
when a test runs a whole suite in seconds. Disable
the fixtures with `pytest -p no:ecgbench`.

## Hooks

Each hook is shown with its signature as written in `ecgbench/hookspecs.py`;
an implementation may take any subset of the parameters, by name.
"""


def render_page(module: ModuleType = hookspecs) -> str:
    """The whole ``docs/plugins.md`` text."""
    functions = hook_functions(module)
    grouped = sections(module)
    placed = {name for _title, _intro, names in grouped for name in names}
    leftover = [name for name in functions if name not in placed]
    if leftover:  # a hook outside any "# --- SECTION ---" block is still documented
        grouped.append(("other", "", leftover))
    parts = [INTRO]
    for title, intro, names in grouped:
        parts.append(f"\n### {title[:1].upper()}{title[1:]} hooks\n\n" + (f"{_md(intro)}\n" if intro else ""))
        parts += ["\n" + render_hook(parse_hook(name, functions[name])) for name in names]
    return "".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecgbench.hookdocs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/plugins.md is out of date, write nothing")
    parser.add_argument("--out", type=Path, default=DOCS_PAGE, help="the page to write (default: %(default)s)")
    args = parser.parse_args(argv)
    problems = check_hookspecs()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    text = render_page()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; regenerate it: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
