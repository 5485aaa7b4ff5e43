"""How the words typed after ``recurjobs`` become checked values, and how a mistake reads.

The ``type=`` converters of the options (each says what the value "must be", so the error names
the option and the rule), the parser class that turns argparse's errors into one line with exit
code 2, and the step that lets a value start with a dash. :mod:`recurjobs.cli` builds the parser
from these.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import NoReturn

from recurjobs._clitext import parse_duration
from recurjobs._validate import table_prefix

__all__ = [
    "PROG",
    "Parser",
    "duration_arg",
    "join_dash_values",
    "limit_arg",
    "name_arg",
    "positive_seconds",
    "prefix_arg",
]

PROG = "recurjobs"
# Options whose value may look like a negative number or duration ("-5m"): argparse would take
# such a value for an option and say "expected one argument".
_VALUE_OPTIONS = ("--older-than", "--stop-timeout", "--seconds")


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line ending in ``(see PROG --help)``."""

    def error(self, message: str) -> NoReturn:
        # "argument --older-than: must be ..." reads better as "--older-than must be ...".
        message = re.sub(r"^argument (\S+): must ", r"\1 must ", message)
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration such as 7d, 12h, 30m, 45s or 1h30m, got {text!r}"
        ) from None


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def prefix_arg(text: str) -> str:
    try:
        return table_prefix(text, "prefix")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be {str(exc).partition(' must be ')[2]}") from None


def name_arg(text: str) -> str:
    if not 1 <= len(text) <= 200:
        raise argparse.ArgumentTypeError(f"must be a job name of 1 to 200 characters, got {text!r}")
    if text.endswith(" "):
        raise argparse.ArgumentTypeError(f"must not end with a space, got {text!r}")
    return text


def limit_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 10000, got {text!r}")
    return value


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--older-than -5m`` becomes ``--older-than=-5m`` so the value reaches its check."""
    result: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        following = items[i + 1] if i + 1 < len(items) else None
        if item in _VALUE_OPTIONS and following is not None and re.match(r"-[\d.]", following):
            result.append(f"{item}={following}")
            i += 2
            continue
        result.append(item)
        i += 1
    return result
