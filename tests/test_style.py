"""The style checks CI enforces: ruff (lint and format), snakefmt and snakemake --lint; the docs' links."""

import ast
import re
import subprocess

from conftest import BIN, REPO, SNAKEFILE, env


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


def test_ruff_lint_and_format():
    lint = run(str(BIN / "ruff"), "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run(str(BIN / "ruff"), "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_snakefmt():
    result = run(str(BIN / "snakefmt"), "--check", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint():
    result = run(str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def test_readme_and_docs_links_resolve():
    """Every relative link (and #anchor) in README.md, docs/*.md and the package's docstrings names
    a file (and heading) that exists."""
    pages = [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        *sorted((REPO / "src/wcgan").glob("*.py")),
    ]
    assert len(pages) > 1
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if page.suffix == ".py":  # the docstrings, not the code
            nodes = [n for n in ast.walk(ast.parse(text)) if isinstance(n, DOCUMENTED)]
            text = "\n".join(filter(None, map(ast.get_docstring, nodes)))
        text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.is_file():
                broken.append(f"{page.name}: {target} (no file)")
            elif fragment and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no heading)")
    assert not broken, "\n".join(broken)


def test_docs_module_map_lists_every_module_and_imports_only_go_down_it():
    """docs/layout.md's table of the package is its import order: a module imports only those
    listed below it (lazy imports inside functions included), so there is no cycle anywhere."""
    order = re.findall(
        r"^\| `(\w+)` \|", (REPO / "docs" / "layout.md").read_text(encoding="utf-8"), flags=re.M
    )
    modules = {path.stem: path for path in (REPO / "src" / "wcgan").glob("*.py") if path.stem != "__init__"}
    assert sorted(order) == sorted(modules)
    upward = [
        f"{name} imports {used}"
        for name, path in modules.items()
        for used in set(re.findall(r"from wcgan\.(\w+) import", path.read_text(encoding="utf-8")))
        if order.index(used) <= order.index(name)
    ]
    assert not upward, upward
