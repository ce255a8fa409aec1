"""Every hook is documented in the agreed format, and docs/plugins.md is the page generated from the code
(datasette's documented-hooks test). The checker is shown to fail on a constructed hookspec module."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from ecgbench import hookdocs, hookspecs

GOOD = textwrap.dedent(
    '''
    from __future__ import annotations

    from typing import Any


    # --- registration -------------------------------------------------------------
    # Called once per registry.


    def ecgbench_register_things(register: Callable[[type], None]) -> None:
        """Register things.

        When it runs: once per registry.

        :param register: call it once per thing.
        :return: nothing; the return value is ignored.

        Example::

            @hookimpl
            def ecgbench_register_things(register):
                register(Thing)
        """


    # --- lifecycle -------------------------------------------------------------
    # Called by the runner.


    def ecgbench_thing_done(thing: str, count: int) -> None:
        """Called when a ``thing`` is done.

        When it runs: after each thing.

        :param thing: the thing's name.
        :param count: how many
            so far (a field may wrap).
        :return: nothing; the return value is ignored.

        Example::

            @hookimpl
            def ecgbench_thing_done(thing, count):
                print(thing)
        """
    '''
)


def _module(tmp_path, source: str, name: str = "fake_hookspecs"):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_hookspec_follows_the_format():
    assert hookdocs.check_hookspecs(hookspecs) == []


def test_docs_page_is_the_generated_one():
    committed = hookdocs.DOCS_PAGE.read_text(encoding="utf-8") if hookdocs.DOCS_PAGE.exists() else ""
    assert committed == hookdocs.render_page(), f"docs/plugins.md is out of date; regenerate it: {hookdocs.REGENERATE}"


def test_docs_page_shows_every_signature_of_the_code():
    assert hookdocs.check_documented_signatures(hookdocs.DOCS_PAGE.read_text(encoding="utf-8")) == []
    assert "`ecgbench_cell_finished(cell: CellSpec, run_id: str, status: str, metrics: dict[str, Any], error: str | None, artifacts: dict[str, str]) -> None`" in (
        hookdocs.DOCS_PAGE.read_text(encoding="utf-8")
    )


def test_a_well_formed_fake_module_passes_and_renders_by_section(tmp_path):
    module = _module(tmp_path, GOOD)
    assert hookdocs.check_hookspecs(module) == []
    assert hookdocs.sections(module) == [
        ("registration", "Called once per registry.", ["ecgbench_register_things"]),
        ("lifecycle", "Called by the runner.", ["ecgbench_thing_done"]),
    ]
    page = hookdocs.render_page(module)
    assert page.index("### Registration hooks") < page.index("#### ecgbench_register_things") < page.index("### Lifecycle hooks")
    assert "`ecgbench_thing_done(thing: str, count: int) -> None`" in page
    assert "- `count` (`int`): how many so far (a field may wrap)." in page
    assert "Called when a `thing` is done." in page  # reST literals become Markdown code
    assert "```python\n@hookimpl\ndef ecgbench_thing_done(thing, count):\n    print(thing)\n```" in page


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ('''"""Called when a ``thing`` is done.\n\n''', '''"""''', "ecgbench_thing_done: the docstring must start with a one-line summary"),
        ("    :param count: how many\n        so far (a field may wrap).\n", "", "':param' lines document ['thing'], the signature has ['thing', 'count']"),
        (":param count:", ":param total:", "document ['thing', 'total'], the signature has ['thing', 'count']"),
        ("thing: str, count: int)", "thing: str, count: int, extra: int)", "the signature has ['thing', 'count', 'extra']"),
        ("count: int)", "count)", "parameter 'count' has no type annotation"),
        ("count: int)", "count: Any)", "parameter 'count' is annotated Any"),
        ("    When it runs: after each thing.\n\n", "", "no 'When it runs:' paragraph"),
        ("    :return: nothing; the return value is ignored.\n\n    Example::\n\n        @hookimpl\n        def ecgbench_thing_done", "    Example::\n\n        @hookimpl\n        def ecgbench_thing_done", "no ':return:' line"),
        ("def ecgbench_thing_done(thing, count):", "def other(thing, count):", "no 'Example::' block with an @hookimpl implementation"),
    ],
)
def test_the_checker_fails_on_each_departure_from_the_format(tmp_path, old, new, problem):
    assert GOOD.count(old) == 1
    module = _module(tmp_path, GOOD.replace(old, new))
    problems = hookdocs.check_hookspecs(module)
    assert any(problem in p for p in problems), problems


def test_a_missing_docstring_fails(tmp_path):
    source = GOOD.split("def ecgbench_thing_done")[0] + "def ecgbench_thing_done(thing: str) -> None:\n    pass\n"
    assert hookdocs.check_hookspecs(_module(tmp_path, source)) == ["ecgbench_thing_done: no docstring (see the format in ecgbench/hookspecs.py)"]


def test_a_documented_signature_that_drifts_from_the_code_fails(tmp_path):
    page = hookdocs.render_page(_module(tmp_path, GOOD))
    changed = _module(tmp_path, GOOD.replace("count: int)", "count: int, extra: int)").replace(
        "        so far (a field may wrap).\n", "        so far (a field may wrap).\n    :param extra: more.\n"
    ), name="changed_hookspecs")
    assert hookdocs.check_hookspecs(changed) == []
    assert hookdocs.check_documented_signatures(page, changed) == [
        "ecgbench_thing_done: the docs page lacks the signature "
        "`ecgbench_thing_done(thing: str, count: int, extra: int) -> None`; regenerate it: python -m ecgbench.hookdocs"
    ]


def test_check_command_reports_a_stale_page(tmp_path, capsys):
    page = tmp_path / "plugins.md"
    assert hookdocs.main(["--out", str(page)]) == 0
    assert page.read_text() == hookdocs.render_page()
    assert hookdocs.main(["--check", "--out", str(page)]) == 0
    page.write_text(page.read_text().replace("#### ecgbench_cell_started", "#### renamed"))
    assert hookdocs.main(["--check", "--out", str(page)]) == 1
    assert "out of date; regenerate it: python -m ecgbench.hookdocs" in capsys.readouterr().err


def test_a_hook_outside_any_section_is_still_documented(tmp_path):
    lone = GOOD.split("def ecgbench_thing_done", 1)[1].split('"""', 1)[1].split('"""', 1)[0]
    hook = f'def ecgbench_lone(thing: str, count: int) -> None:\n    """{lone.replace("ecgbench_thing_done", "ecgbench_lone")}"""\n\n\n'
    module = _module(tmp_path, GOOD.replace("# --- registration", hook + "# --- registration", 1))
    assert hookdocs.check_hookspecs(module) == []
    assert [title for title, _, _ in hookdocs.sections(module)] == ["registration", "lifecycle"]
    page = hookdocs.render_page(module)
    assert page.index("### Lifecycle hooks") < page.index("### Other hooks") < page.index("#### ecgbench_lone")
