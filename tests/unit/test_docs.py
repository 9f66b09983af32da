"""The docs match the code: every relative link in README.md and docs/**.md resolves, and every
command they quote (`s3-vendor-import ...`, `.venv/bin/s3-vendor-import ...`, `bench/*.py`) runs
with --help (exit 0) and knows every --option the quote gives it."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
CLI = re.compile(r"(?:\.venv/bin/)?\bs3-vendor-import ((?:[a-z][a-z-]*)(?:\|[a-z][a-z-]*)*)(.*)")
BENCH = re.compile(r"\bbench/([a-z_]+)\.py\b(.*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def relative_links() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http(s), mailto: not files; #anchors stay in the page
            found.append((rel(doc), target))
    return found


def quoted_commands() -> list[tuple[str, str, str, str]]:
    """(doc, kind "cli"|"bench", command name, the rest of the quoted line) for every command in
    a code span or a code block (lines continued with a backslash are joined)."""
    found = []
    for doc in DOCS:
        for block, span in CODE.findall(doc.read_text()):
            text = (block or span).replace("\\\n", " ")
            for line in text.splitlines():
                line = line.split(" #", 1)[0]  # a shell comment is no option
                for m in CLI.finditer(line):
                    for name in m.group(1).split("|"):
                        found.append((rel(doc), "cli", name, m.group(2)))
                for m in BENCH.finditer(line):
                    found.append((rel(doc), "bench", m.group(1), m.group(2)))
    return sorted(set(found))


@cache
def help_text(kind: str, name: str) -> tuple[int, str]:
    if kind == "cli":  # in this process: the console script is local.cli:main (pyproject.toml)
        from local.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main([name, "--help"])
            except SystemExit as exc:
                code = exc.code
        return int(code or 0), out.getvalue()
    argv = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--help"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_the_docs_quote_commands_and_links_at_all():
    # the scans below would pass vacuously if the patterns stopped matching
    assert len(relative_links()) >= 10
    names = {(kind, name) for _, kind, name, _ in quoted_commands()}
    assert {("cli", "run"), ("cli", "list"), ("cli", "provision-aep"), ("bench", "run_all")} <= names


@pytest.mark.parametrize(("doc", "target"), relative_links())
def test_every_relative_link_resolves(doc, target):
    path = (ROOT / doc).parent / target.split("#", 1)[0]
    assert path.exists(), f"{doc} links to {target}, which does not exist"


@pytest.mark.parametrize(("doc", "kind", "name", "rest"), quoted_commands())
def test_every_quoted_command_runs_with_help_and_knows_its_options(doc, kind, name, rest):
    code, text = help_text(kind, name)
    assert code == 0, f"{doc}: `{kind} {name} --help` exited {code}: {text[-500:]}"
    unknown = [o for o in OPTION.findall(rest) if o not in text]
    assert unknown == [], f"{doc}: {name} is quoted with {unknown}, which its --help does not list"
