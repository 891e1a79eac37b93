"""The ``prior-landscape`` command.

    prior-landscape review PATH [--json] [--verbose]

PATH is an archive made by ``snakemake archive`` (``archives/results.tar.gz``), an
unpacked archive, or a ``results/`` folder. The review lists each artefact with
its provenance, size, row count and a short summary, verifies the checksums
against the manifest, and says which figures and tables can be re-rendered from
it alone. Exit status: 0 when everything matches the manifest (or there is no
manifest to check against), 1 when a file is changed or missing, 2 on a usage
error or a path that does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys


def _review(args) -> int:
    from prior_landscape.io.archive import format_review, review

    try:
        rv = review(args.path)
    except FileNotFoundError as e:
        print(f"prior-landscape review: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rv.to_dict(), indent=1, default=str))
    else:
        print(format_review(rv, verbose=args.verbose))
    return 0 if rv.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prior-landscape", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("review", help="review an archive or a results/ folder: provenance, checksums, re-renderable figures")
    p.add_argument("path", help="archives/results.tar.gz, an unpacked archive, or a results/ folder")
    p.add_argument("--json", action="store_true", help="print the review as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="list every file, logs and benchmarks included")
    p.set_defaults(func=_review)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
