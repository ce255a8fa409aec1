"""``ecgbench data fetch NAME --to DIR``: download a public dataset into a folder, verified and resumable."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ecgbench.errors import ConfigError

FETCHABLE = ("cinc2017",)


def register(subparsers) -> None:
    """Add the ``data`` subcommand and its ``fetch`` action."""
    p = subparsers.add_parser("data", help="download public datasets")
    sub = p.add_subparsers(metavar="ACTION")
    f = sub.add_parser("fetch", help="download, verify (SHA-256) and unpack a dataset; resumes an interrupted download")
    f.add_argument("name", help=f"dataset to fetch: {', '.join(FETCHABLE)}")
    f.add_argument("--to", type=Path, required=True, help="folder to unpack into (new or empty)")
    f.add_argument("--url", help="archive URL (default: the official PhysioNet file)")
    f.add_argument("--sha256", help="expected SHA-256 of the archive (default: PhysioNet's published SHA256SUMS.txt)")
    f.set_defaults(func=cmd_fetch)
    p.set_defaults(func=lambda args: _help(p))


def cmd_fetch(args: argparse.Namespace) -> int:
    """Run ``ecgbench data fetch``."""
    from ecgbench.data.fetch import CINC2017_URL, fetch_cinc2017

    if args.name not in FETCHABLE:
        raise ConfigError(f"cannot fetch '{args.name}': known datasets are {', '.join(FETCHABLE)}")
    url = args.url or CINC2017_URL
    checksums = {url.rsplit("/", 1)[-1]: args.sha256.lower()} if args.sha256 else None
    folder = fetch_cinc2017(args.to, url=url, checksums=checksums, progress=not os.environ.get("ECGBENCH_QUIET"))
    print(f"{args.name} is in {folder}; use it with --data-dir {args.name}={folder}")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
