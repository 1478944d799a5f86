"""The options of the restore commands of `python -m etl.run` (--restore-plan, --take-manifest,
--verify-restore), apart from etl.restore.cli so that building the command's parser imports no
restore code."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, mode: argparse._MutuallyExclusiveGroup) -> None:
    """The restore modes (exclusive with --plan and --validate-only) and their options."""
    mode.add_argument(
        "--restore-plan",
        action="store_true",
        help="print the minimal restore sequence reaching the restore point, or why none "
        "exists (the job's `restore` section)",
    )
    mode.add_argument(
        "--verify-restore",
        action="store_true",
        help="compare the restored database with the checksum manifest composed for the "
        "restore point; exit 1 when they differ",
    )
    mode.add_argument(
        "--take-manifest",
        metavar="BACKUP",
        help="checksum the `restore.source` tables now and save the manifest as BACKUP.json "
        "in the manifests folder (take it with each backup)",
    )
    parser.add_argument(
        "--point",
        metavar="POINT",
        help="restore point for --restore-plan/--verify-restore instead of `restore.point`: "
        "LSN, SCN, oplog SECONDS:INCREMENT, ISO time, or 'latest'",
    )
    parser.add_argument(
        "--sequence",
        metavar="B1,B2,...",
        help="with --restore-plan: check this sequence of backups instead of planning one",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --restore-plan: print the plan as one JSON object (steps, notes, warnings and "
        "every unused backup with why)",
    )
    parser.add_argument(
        "--position",
        metavar="POSITION",
        help="with --take-manifest: the backup's position (LSN, SCN, oplog SECONDS:INCREMENT); "
        "default for a PostgreSQL source: its current WAL LSN",
    )
    parser.add_argument(
        "--base",
        metavar="BACKUP",
        help="with --take-manifest: take a differential manifest against BACKUP's manifest "
        "(the full one for a differential backup, the previous link for an incremental)",
    )


def requested(args: argparse.Namespace) -> bool:
    return bool(args.restore_plan or args.verify_restore or args.take_manifest)


def command_name(args: argparse.Namespace) -> str:
    return (
        "restore-plan" if args.restore_plan else "verify-restore" if args.verify_restore else "take-manifest"
    )
