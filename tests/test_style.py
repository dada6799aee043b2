"""The style checks CI enforces: ruff (lint and format), snakefmt and snakemake --lint."""

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
