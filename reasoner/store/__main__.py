"""`python -m reasoner.store export --data-dir DIR --out OUT`: the store as datasets-loadable files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ReasonerError
from . import DB_NAME, Store, export_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoner.store", description=__doc__.split(":")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write pairs/, all_bad/ and edits.jsonl (see reasoner/store/export.py)")
    export.add_argument("--data-dir", default=os.environ.get("REASONER_DATA", "studio-data"))
    export.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # Store.open would create a new, empty store: an export reads an existing one or nothing
    data_dir = Path(args.data_dir).expanduser()
    if not (data_dir / DB_NAME).is_file():
        what = "does not exist" if not data_dir.is_dir() else f"holds no studio database ({DB_NAME})"
        print(f"error: --data-dir {data_dir} {what}", file=sys.stderr)
        return 2
    try:
        summary = export_dataset(Store.open(data_dir), args.out)
    except (ReasonerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.pairs} pairs, {summary.all_bad} all-bad pictures, {summary.edits} edits to {args.out}")
    for name in summary.skipped:
        print(f"{name}/ not written: no {'all-bad verdicts' if name == 'all_bad' else 'preference pairs'} to export")
    return 0


if __name__ == "__main__":
    sys.exit(main())
