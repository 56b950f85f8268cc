"""Run every benchmark in a fresh interpreter and print the ratios against the stdlib.

Usage (on the installed package, from anywhere):

    python bench/run_bench.py [pytest -k expression] [--json OUT.json]

Each benchmark id is run by its own ``python -m pytest`` process, so no
measurement inherits another's heap, threads or GC state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def collect(expression: str | None, files: list[str]) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        *(str(HERE / f) for f in files),
    ]
    if expression:
        command += ["-k", expression]
    out = subprocess.run(
        command, capture_output=True, text=True, cwd=HERE.parent, check=False
    ).stdout
    return [line.strip() for line in out.splitlines() if "::" in line]


def run_one(node: str) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "b.json"
        command = [
            sys.executable,
            "-m",
            "pytest",
            node,
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-only",
            f"--benchmark-json={report}",
            "-s",
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, check=False)
        if done.returncode not in (0, 5):
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return []
        if not report.exists():
            return []
        benchmarks: list[dict[str, object]] = json.loads(report.read_text())["benchmarks"]
        return benchmarks


def _baseline_of(name: str, results: dict[str, dict[str, object]]) -> str | None:
    """The stdlib run of the same benchmark: ``test_x[stdlib]``, or, for an id
    with a numeric suffix such as ``threadloom-2``, ``test_x[stdlib-2]``."""
    if "[" not in name:
        return None
    test, param = name[:-1].split("[", 1)
    suffix = param.rsplit("-", 1)[1] if "-" in param and param.rsplit("-", 1)[1].isdigit() else None
    for other in results:
        if not other.startswith(test + "[stdlib"):
            continue
        other_param = other[len(test) + 1 : -1]
        if suffix is None or other_param.endswith("-" + suffix):
            return other
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-k", dest="expression", default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("files", nargs="*", default=["bench_executor.py"])
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    for node in collect(args.expression, args.files):
        for bench in run_one(node):
            stats = bench["stats"]
            assert isinstance(stats, dict)
            results[str(bench["name"])] = {
                "min": stats["min"],
                "median": stats["median"],
                "extra": bench.get("extra_info", {}),
            }
            extra = bench.get("extra_info", {})
            print(
                f"{bench['name']:<70} min {stats['min'] * 1e3:10.2f} ms  "
                f"median {stats['median'] * 1e3:10.2f} ms  {extra}",
                flush=True,
            )
    print()
    print(f"Python {sys.version.split()[0]}, GC on, {os.cpu_count()} CPUs")
    for name, data in sorted(results.items()):
        baseline = _baseline_of(name, results)
        if baseline is None or baseline == name:
            continue
        ratio = float(results[baseline]["min"]) / float(data["min"])  # type: ignore[arg-type]
        print(f"  {name:<62} {ratio:8.2f}x {baseline}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
