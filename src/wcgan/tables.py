"""The metrics table: per-label and overall score files merged into ``metrics.tsv``."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from wcgan.atomic import atomic_open, read_checked

SUMMARY_COLUMNS = ("scope", "label", "n_fake", "n_real", "is_mean", "fid", "kid_mean", "precision", "recall")


def write_tsv(table: pd.DataFrame, out: str | os.PathLike, digits: int = 6) -> None:
    """A table as TSV, written atomically with its checksum, floats to ``digits`` significant digits."""
    with atomic_open(out, "w", checksum=True, newline="", encoding="utf-8") as fh:
        table.to_csv(fh, sep="\t", index=False, float_format=f"%.{digits}g")


def read_checked_csv(path: str | os.PathLike, what: str, sep: str = "\t", **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` of a table wcgan wrote, once it matches its checksum (``read_checked``)."""
    return pd.read_csv(io.StringIO(read_checked(path, what)), sep=sep, **kwargs)


def write_metrics(records: Sequence[dict], out: str | os.PathLike) -> pd.DataFrame:
    """``metrics.tsv``: the overall row first, then the labels in class-index order."""
    table = pd.DataFrame(records).sort_values("index", kind="stable")
    write_tsv(table, out)
    return table


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    return read_checked_csv(
        path, "metrics table", keep_default_na=False, na_values=[""], dtype={"label": str, "slug": str}
    )


def format_metrics(path: str | os.PathLike, max_rows: int = 25) -> str:
    """A short plain-text view of ``metrics.tsv`` for the end of a run."""
    table = read_metrics(path)
    columns = [c for c in SUMMARY_COLUMNS if c in table.columns]
    shown = table[columns].head(max_rows)
    text = shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    extractor = table["extractor"].iloc[0] if len(table) else "?"
    more = f"\n... {len(table) - max_rows} more rows in {path}" if len(table) > max_rows else ""
    return f"metrics ({extractor} features) from {path}:\n{text}{more}"


def missing_models(models: Mapping[str, tuple[str | os.PathLike, str]]) -> str | None:
    """After a failed run: one line naming the labels (or generators) whose model file is
    missing, and the logs that say why: ``models`` maps each name to its model's path and the
    log of the job that failed it (its split's, or its training's). None when every one has
    its model."""
    missing = [name for name, (path, _) in models.items() if not Path(path).exists()]
    if not missing:
        return None
    shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
    logs = list(dict.fromkeys(models[name][1] for name in missing))
    where = ", ".join(logs[:3]) + (f" and {len(logs) - 3} more" if len(logs) > 3 else "")
    return (
        f"{len(missing)} of {len(models)} labels have no trained model, so the merged scores and "
        f"figures were not made: {shown}; see {where}, fix, and rerun (finished chunks are kept, "
        f"interrupted ones resume)"
    )
