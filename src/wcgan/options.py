"""Config sections and command-line options, both ways: the options a section's dataclass gives
a command (``add_config_options``), the section the parsed options give back
(``config_from_options``), and a section of the workflow's config as the options of a rule's
command (``format_options``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from typing import Any


def _option_kwargs(annotation: str) -> dict[str, Any]:
    base = annotation.replace(" | None", "")
    if base == "tuple[float, float]":
        return dict(type=float, nargs=2, metavar=("A", "B"))
    if base == "bool":
        return dict(action=argparse.BooleanOptionalAction)
    return dict(type={"int": int, "float": float, "str": str}[base])


def add_config_options(
    parser: argparse.ArgumentParser, cls: type, title: str, exclude: Sequence[str] = ()
) -> None:
    """One ``--field-name`` option per dataclass field, its help from the field's metadata
    (``wcgan.config.option``); unset options keep the dataclass default."""
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        default = "unset" if field.default is None else field.default
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            default=argparse.SUPPRESS,
            help=f"{field.metadata['help']} (default: {default})",
            **_option_kwargs(str(field.type)),
        )


def config_from_options(cls: type, options: Mapping[str, Any], **fixed: Any) -> Any:
    """The config section that a command's parsed ``options`` give (unset ones absent), with
    ``fixed`` values in place of any option's, checked as the command will use it."""
    values = {f.name: options[f.name] for f in dataclasses.fields(cls) if f.name in options}
    return cls.from_mapping({**values, **fixed})


def format_options(values: Mapping[str, Any]) -> str:
    """The inverse of ``add_config_options``: a config section as shell-quoted options."""
    words: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
