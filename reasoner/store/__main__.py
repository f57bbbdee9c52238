"""`python -m reasoner.store export --data-dir DIR --out OUT`: the store as datasets-loadable files."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import ReasonerError
from . import Store, export_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoner.store", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write pairs/, all_bad/ and edits.jsonl (see reasoner/store/export.py)")
    export.add_argument("--data-dir", default=os.environ.get("REASONER_DATA", "studio-data"))
    export.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        summary = export_dataset(Store.open(args.data_dir), args.out)
    except (ReasonerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.pairs} pairs, {summary.all_bad} all-bad pictures, {summary.edits} edits to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
