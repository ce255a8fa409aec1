"""The README's two set-up commands stay true: CI runs the test one verbatim."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _commands():
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", section, re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = _commands()
    assert len(commands) == 2
    assert "ecgbench run suites/quick.yaml" in commands[0]
    assert "pytest" in commands[1] and "[dev]" in commands[1]
    for command in commands:
        assert "torch==2.13.0" in command  # the CPU build; an open range pulls CUDA packages
        assert "\n" not in command.strip()


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = _commands()[1].strip()
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert any(line == test_command or line.startswith(test_command + " || exit") for line in ci_lines)


def test_readme_command_runs_the_fast_tests_and_ci_then_the_slow_ones():
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["addopts"] == "-m 'not slow'"  # the README's bare `pytest` deselects the slow tests
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    readme_at = next(i for i, line in enumerate(ci_lines) if line.startswith(_commands()[1].strip()))
    assert "pytest -m slow" in ci_lines[readme_at + 1 :]


def test_the_quick_start_report_goes_where_git_ignores_it():
    """The README's first command leaves a clean checkout: its report folder is git-ignored."""
    out = yaml.safe_load((REPO / "suites" / "quick.yaml").read_text())["report"]["out"]
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    probe = f"{out}/report.md"
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=REPO)
    assert result.returncode == 0, f"{probe} (suites/quick.yaml report.out) is not git-ignored; add it to .gitignore"
    assert not out.startswith("reports/")  # the committed, published report stays as published
    text = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert f"`{out}/`" in text.replace("\n", " ")
