"""What the ``recurjobs`` database commands do once their arguments are parsed.

``status``, ``trigger``, ``pause``, ``resume``, ``prune`` and ``history``: each calls one helper
of :mod:`recurjobs._clistore` with ``args.database`` (filled in by :func:`recurjobs.cli.main`)
and prints the outcome on standard output, returning the exit code 0. Nothing here catches: a
:class:`recurjobs._clistore.CommandError` reaches ``main``, which makes it one line on standard
error.
"""

from __future__ import annotations

import argparse
import json

from recurjobs._cliargs import PROG
from recurjobs._clistore import pause_row, read_rows, read_runs, trigger_row, with_store
from recurjobs._clitext import database_table, history_table, to_json

__all__ = ["cmd_history", "cmd_pause", "cmd_prune", "cmd_resume", "cmd_status", "cmd_trigger"]


def cmd_status(args: argparse.Namespace) -> int:
    rows = read_rows(args.database, args.table_prefix, source=args.database_source)
    if args.json:
        print(json.dumps([to_json(r) for r in rows], indent=2))
    else:
        print(database_table(rows))
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    trigger_row(args.database, args.table_prefix, args.name, source=args.database_source)
    print(f"triggered {args.name}: the next server to poll runs it")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    pause_row(args.database, args.table_prefix, args.name, True, source=args.database_source)
    print(
        f"paused {args.name}: no server claims it until `{PROG} resume {args.name}` "
        "(a run going on finishes)"
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    pause_row(args.database, args.table_prefix, args.name, False, source=args.database_source)
    print(f"resumed {args.name}: it runs when it is next due")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    keep = None if args.keep is None else set(args.keep)
    pruned: list[str] = with_store(
        args.database,
        args.table_prefix,
        lambda store: store.prune(keep=keep, older_than=args.older_than),
        args.database_source,
    )
    if pruned:
        print(f"pruned {len(pruned)} row(s): {', '.join(pruned)}")
    else:
        print("nothing to prune")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    records = read_runs(
        args.database,
        args.table_prefix,
        job=args.job,
        limit=args.limit,
        source=args.database_source,
    )
    if args.json:
        print(json.dumps([to_json(r) for r in records], indent=2))
    else:
        print(history_table(records))
    return 0
