"""The ``prior-landscape`` command.

    prior-landscape review PATH [--json] [--verbose] [--sha256 HEX] [--require-manifest]

PATH is an archive made by ``snakemake archive`` (``archives/results-demo.tar.gz``),
an unpacked archive, a results folder (``results/demo``) or a working directory
(its config.yaml's ``results``). The review opens with a one-screen summary: what
was run (configuration and scale, git commit, dates, contents), what passed, and
what is flagged, with counts (failures, which set the exit status, and notes,
which do not). The detail follows: each artefact with its provenance, size, row
count and a short summary, the other files, the checksums against the manifest
(each failure named), and which figures and tables can be re-rendered from it
alone. The last line is the verdict.

Exit status, for scripts:

0
    everything verified: every file readable (every Parquet file read whole, its
    own checksums correct) and, with a manifest, every file listed, present and
    unchanged; for an archive, read to its verified end, its config.yaml that of
    the manifest and its detached checksum (``--sha256``, else ``PATH.sha256``
    when present) matching. A folder without a manifest gives 0 when every file
    is readable (nothing to verify them against; ``--require-manifest`` makes
    that a failure). An archive without a manifest is always a failure.
1
    anything else: a file unreadable, damaged, changed, missing or not listed in
    the manifest, a damaged or truncated archive, a missing or malformed
    manifest, a checksum that does not match. The output names each.
2
    a usage error or a path that does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys


def _review(args) -> int:
    from prior_landscape.io.archive import format_review, review

    try:
        rv = review(args.path, expected_sha256=args.sha256)
    except (FileNotFoundError, ValueError) as e:
        print(f"prior-landscape review: {e}", file=sys.stderr)
        return 2
    if args.require_manifest and rv.manifest is None:
        rv.problems.append("no usable manifest, and --require-manifest was given")
    if args.json:
        print(json.dumps(rv.to_dict(), indent=1, default=str))
    else:
        print(format_review(rv, verbose=args.verbose))
    return 0 if rv.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prior-landscape", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "review",
        help="review an archive or a results folder: a summary, then provenance, checksums, re-renderable figures",
    )
    p.add_argument("path", help="archives/results-demo.tar.gz, an unpacked archive, or a results folder (results/demo)")
    p.add_argument("--json", action="store_true", help="print the review as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="list every file, logs and benchmarks included")
    p.add_argument(
        "--sha256",
        metavar="HEX",
        default=None,
        help="the archive's sha256 as recorded apart from it (detects an archive changed together with "
        "its manifest); default: PATH.sha256 when present",
    )
    p.add_argument(
        "--require-manifest",
        action="store_true",
        help="fail when there is no manifest (a folder without one is otherwise only checked for readability)",
    )
    p.set_defaults(func=_review)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
