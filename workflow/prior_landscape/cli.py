"""The ``prior-landscape`` command.

    prior-landscape review PATH [--json] [--verbose] [--sha256 HEX] [--require-manifest]
    prior-landscape plan --gpus N[,N…] [--config config/paper.yaml] [--timing PATH] [--gpu-check PATH]
                         [--by-stage] [--json | --markdown]

``plan`` prints what a configuration costs on GPUs: per stage the work units, the seconds per
unit and where that number comes from (measured, a GPU-check record, P Table 1), the GPU-hours
and the wall time on N GPUs (prior_landscape.plan). Exit status 2 when an input cannot be used
(the message names the file and key), and nothing is printed on stdout.


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


def _gpu_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: GPU counts are integers, e.g. 8 or 1,8,32") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: every GPU count must be at least 1")
    return counts


def _plan(args) -> int:
    from prior_landscape.plan import PlanError, build_plan, format_markdown, format_text

    try:
        plan = build_plan(
            args.config, args.gpus, timing_path=args.timing, gpu_check_path=args.gpu_check, stages=args.by_stage
        )
    except PlanError as e:
        print(f"prior-landscape plan: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    elif args.markdown:
        print(format_markdown(plan))
    else:
        print(format_text(plan))
    return 0


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
    p = sub.add_parser(
        "plan",
        help="GPU-hours and wall time of a configuration's stages on N GPUs, each cost with its source",
    )
    p.add_argument("--gpus", type=_gpu_counts, required=True, metavar="N[,N…]", help="GPU counts, e.g. 8 or 1,8,32")
    p.add_argument("--config", default="config/paper.yaml", help="the configuration (default: config/paper.yaml)")
    p.add_argument(
        "--timing",
        default=None,
        help="measure_prior_costs' artefact (default: {results}/timing/priors.parquet when it exists)",
    )
    p.add_argument(
        "--gpu-check",
        default=None,
        help="a GPU-check record (JSON; default: the newest docs/gpu_check/*.json, if any)",
    )
    p.add_argument("--by-stage", action="store_true", help="one row per stage instead of one per prior or case")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the plan as JSON")
    fmt.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=_plan)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
