#!/usr/bin/env python3
"""Check what a threadloom wheel or sdist ships.

    python tools/check_wheel.py [--src DIR] [--forbid-path PATH]... DIST...

DIST is a ``.whl`` or an sdist ``.tar.gz``; each check prints ``ok`` or
``FAIL`` with what is wrong, and the exit status is 1 if any check failed.

A wheel must hold the extension, ``_core.pyi``, ``py.typed`` and the LICENSE
(in ``*.dist-info/licenses/``), and no generated C, Cython sources, tests or
build leftovers; a Linux wheel must be repaired (a manylinux or musllinux tag).
Its extension must be a release build: no debug sections, no symbol table on
Linux, no run path, and no path of the machine that built it (the generic
markers below, plus every ``--forbid-path``).  ``--src`` names a source tree
whose ``src/threadloom`` modules must all be in the wheel, or all in the sdist.

ELF is read with pyelftools (a dependency of auditwheel); a Mach-O or PE
extension is searched for the names of DWARF sections instead.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "threadloom"

# Parts of the paths setuptools, build and pip use while building; none has a
# reason to be inside a built file.
BUILD_PATH_MARKERS = (b"build-via-sdist-", b"build-env-", b"/build/temp.", b"pip-req-build-")

WHEEL_FORBIDDEN = re.compile(
    r"""(
        \.(c|h|pyx|pxd|pxi|o|obj|pyc|pdb)$        # sources, objects, bytecode, debug databases
      | (^|/)_core\.html$                      # Cython's annotation
      | (^|/)__pycache__/
      | (^|/)tests?/                           # the test suite stays in the sdist
      | (^|/)build/
    )""",
    re.VERBOSE,
)

SDIST_REQUIRED = (
    "PKG-INFO",
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "csrc/tl_queue.h",
    "csrc/tl_atomic.h",
    "src/threadloom/core/_core.pyx",
    "src/threadloom/core/_core.pxd",
    "src/threadloom/core/_core_managed.pxi",
    "src/threadloom/core/_core.pyi",
    "src/threadloom/_version.py",
    "src/threadloom/py.typed",
    "tests/conftest.py",
    "tests/test_packaging.py",
    "tools/check_wheel.py",
)

SDIST_FORBIDDEN = re.compile(
    r"(^src/threadloom/core/_core\.(c|html)$|\.(so|pyd|o|pyc)$|(^|/)__pycache__/|^\.git/)"
)


@dataclass
class Result:
    """The outcome of one check over one distribution file."""

    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    path: Path
    results: list[Result] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def problems(self) -> list[str]:
        return [f"{r.name}: {p}" for r in self.results for p in r.problems]

    def check(self, name: str, run: Callable[[], Iterable[str]]) -> None:
        self.results.append(Result(name, list(run())))

    def format(self) -> str:
        lines = [f"{self.path.name}"]
        for result in self.results:
            if result.ok:
                lines.append(f"  ok    {result.name}")
            else:
                lines.append(f"  FAIL  {result.name}")
                lines.extend(f"          {problem}" for problem in result.problems)
        if self.sizes:
            lines.append("  size  " + ", ".join(f"{k} {v:,} bytes" for k, v in self.sizes.items()))
        return "\n".join(lines)


# --- the extension -------------------------------------------------------------


def binary_problems(name: str, data: bytes) -> list[str]:
    """Why the compiled module ``name`` (its bytes) is not a release build."""
    if data[:4] == b"\x7fELF":
        return _elf_problems(name, data)
    if data[:4] in (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):  # Mach-O 64, universal
        debug = [s for s in (b"__DWARF", b"__debug_info", b"__debug_line") if s in data]
        return [f"{name}: debug sections {_names(debug)}"] if debug else []
    if data[:2] == b"MZ":  # PE: MSVC keeps debug information in a .pdb, MinGW in sections
        debug = [s for s in (b".debug_info", b".debug_line") if s in data]
        return [f"{name}: debug sections {_names(debug)}"] if debug else []
    return [f"{name}: not an ELF, Mach-O or PE file"]


def _elf_problems(name: str, data: bytes) -> list[str]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    problems = []
    sections = [section.name for section in elf.iter_sections()]
    debug = [s for s in sections if s.startswith((".debug_", ".zdebug_"))]
    if debug:
        problems.append(f"{name}: debug sections {', '.join(debug)} (build with -g0)")
    if ".symtab" in sections:
        problems.append(f"{name}: not stripped (.symtab present; link with -s)")
    for section in elf.iter_sections():
        if not isinstance(section, DynamicSection):
            continue
        for tag in section.iter_tags():
            if tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                path = str(getattr(tag, "rpath", None) or getattr(tag, "runpath", ""))
                outside = [p for p in path.split(":") if p and not p.startswith("$ORIGIN")]
                if outside:
                    problems.append(f"{name}: {tag.entry.d_tag} into the build machine: {path}")
    return problems


def _names(found: Sequence[bytes]) -> str:
    return ", ".join(s.decode() for s in found)


def build_path_problems(name: str, data: bytes, forbid: Sequence[str]) -> list[str]:
    markers = [*BUILD_PATH_MARKERS, *(p.encode() for p in forbid if p)]
    found = [m.decode(errors="replace") for m in markers if m in data]
    return [f"{name}: contains build path {', '.join(found)}"] if found else []


# --- wheels --------------------------------------------------------------------


def _is_extension(member: str) -> bool:
    return bool(re.fullmatch(rf"{PACKAGE}/core/_core(\.[^/]+)?\.(so|pyd)", member))


def member_problems(names: Sequence[str], dist_info: str) -> list[str]:
    """What is missing from, or should not be in, a wheel listing ``names``."""
    problems = []
    required = [
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/_version.py",
        f"{PACKAGE}/core/_core.pyi",
        f"{PACKAGE}/py.typed",
        f"{dist_info}/licenses/LICENSE",
        f"{dist_info}/METADATA",
        f"{dist_info}/entry_points.txt",
        f"{dist_info}/RECORD",
    ]
    problems += [f"missing {r}" for r in required if r not in names]
    extensions = [n for n in names if _is_extension(n)]
    if len(extensions) != 1:
        problems.append(f"expected one compiled {PACKAGE}/core/_core, found {extensions or 'none'}")
    for member in names:
        if member.endswith("/"):
            continue
        top = member.split("/", 1)[0]
        if top not in (PACKAGE, dist_info):
            problems.append(f"unexpected top-level entry {member}")
        elif WHEEL_FORBIDDEN.search(member):
            problems.append(f"should not ship {member}")
    return problems


def check_wheel(path: Path, forbid_paths: Sequence[str] = (), src: Path | None = None) -> Report:
    report = Report(path)
    match = re.fullmatch(r"([^-]+)-([^-]+)-([^-]+)-([^-]+)-([^-]+)\.whl", path.name)
    if not match:
        report.check("file name", lambda: [f"not a wheel file name: {path.name}"])
        return report
    dist, version, _python, _abi, platform = match.groups()
    dist_info = f"{dist}-{version}.dist-info"

    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        contents = {n: wheel.read(n) for n in names if not n.endswith("/")}
        infos = {i.filename: i for i in wheel.infolist()}

    def file_name() -> list[str]:
        problems = []
        if dist != PACKAGE:
            problems.append(f"distribution {dist!r}, expected {PACKAGE!r}")
        if platform.startswith("linux_"):
            problems.append(f"platform tag {platform} is not repaired (run auditwheel repair)")
        if platform == "any":
            problems.append("a pure-Python wheel: the native core was not built")
        return problems

    def version_agrees() -> list[str]:
        metadata = contents.get(f"{dist_info}/METADATA", b"").decode()
        found = re.search(r"^Version: (.+)$", metadata, re.M)
        source = contents.get(f"{PACKAGE}/_version.py", b"").decode()
        declared = re.search(r"^__version__ = \"([^\"]+)\"$", source, re.M)
        problems = []
        if not found or found.group(1) != version:
            problems.append(f"METADATA version {found and found.group(1)} != file name {version}")
        if not declared or declared.group(1) != version:
            problems.append(f"_version.py says {declared and declared.group(1)}, not {version}")
        if "License-Expression: MIT" not in metadata:
            problems.append("METADATA has no License-Expression: MIT")
        return problems

    def license_text() -> list[str]:
        text = contents.get(f"{dist_info}/licenses/LICENSE", b"")
        return (
            []
            if b"MIT License" in text and b"threadloom developers" in text
            else ["licenses/LICENSE is not threadloom's MIT licence"]
        )

    def entry_point() -> list[str]:
        text = contents.get(f"{dist_info}/entry_points.txt", b"").decode()
        return (
            []
            if re.search(r"^threadloom = threadloom\.cli:main$", text, re.M)
            else ["no console script threadloom = threadloom.cli:main"]
        )

    def modules_complete() -> list[str]:
        assert src is not None
        package = src / "src" / PACKAGE
        wanted = sorted(
            f"{PACKAGE}/{p.name}" for p in package.iterdir() if p.suffix in (".py", ".pyi")
        )
        return [f"missing {m} (it is in {package})" for m in wanted if m not in contents]

    def release_build() -> list[str]:
        problems = []
        for name, data in contents.items():
            if _is_extension(name):
                problems += binary_problems(name, data)
        return problems

    def no_build_paths() -> list[str]:
        problems = []
        for name, data in contents.items():
            problems += build_path_problems(name, data, forbid_paths)
        return problems

    report.check("file name and platform tag", file_name)
    report.check("version and licence metadata", version_agrees)
    report.check(
        "files: extension, .pyi, py.typed, LICENSE; no sources or tests",
        lambda: member_problems(names, dist_info),
    )
    report.check("LICENSE text", license_text)
    report.check("console script", entry_point)
    if src is not None:
        report.check("every module of the source tree", modules_complete)
    report.check("extension is a release build (no debug info, stripped, no rpath)", release_build)
    report.check("no build paths in any file", no_build_paths)

    report.sizes["wheel"] = path.stat().st_size
    for name, info in infos.items():
        if _is_extension(name):
            report.sizes["extension"] = info.file_size
            report.sizes["extension compressed"] = info.compress_size
    return report


# --- sdists --------------------------------------------------------------------


def check_sdist(path: Path, src: Path | None = None) -> Report:
    report = Report(path)
    with tarfile.open(path) as sdist:
        members = [m.name for m in sdist.getmembers() if m.isfile()]
    roots = {m.split("/", 1)[0] for m in members}
    root = next(iter(roots)) if len(roots) == 1 else ""
    names = {m.split("/", 1)[1] for m in members if "/" in m}

    def layout() -> list[str]:
        return (
            []
            if root.startswith(f"{PACKAGE}-")
            else [f"expected one {PACKAGE}-* root, found {sorted(roots)}"]
        )

    def required() -> list[str]:
        return [f"missing {r}" for r in SDIST_REQUIRED if r not in names]

    def forbidden() -> list[str]:
        return [f"should not ship {n}" for n in sorted(names) if SDIST_FORBIDDEN.search(n)]

    def complete() -> list[str]:
        assert src is not None
        wanted = [
            p.relative_to(src).as_posix()
            for d in ("src/threadloom", "csrc")
            for p in (src / d).iterdir()
            if p.is_file() and p.suffix in (".py", ".pyi", ".pyx", ".pxd", ".pxi", ".h", ".typed")
        ]
        return [f"missing {w} (it is in {src})" for w in sorted(wanted) if w not in names]

    report.check("one top-level directory", layout)
    report.check("build inputs, LICENSE, CHANGELOG, tests, tools", required)
    report.check("no generated C, binaries or bytecode", forbidden)
    if src is not None:
        report.check("every source file of the tree", complete)
    report.sizes["sdist"] = path.stat().st_size
    return report


def check(path: Path, forbid_paths: Sequence[str] = (), src: Path | None = None) -> Report:
    if path.name.endswith(".whl"):
        return check_wheel(path, forbid_paths, src)
    if path.name.endswith((".tar.gz", ".tgz")):
        return check_sdist(path, src)
    report = Report(path)
    report.check("file type", lambda: [f"neither a wheel nor an sdist: {path.name}"])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dists", nargs="+", type=Path, metavar="DIST")
    parser.add_argument("--src", type=Path, help="the source tree the files were built from")
    parser.add_argument(
        "--forbid-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path of the build machine no file may contain (repeatable)",
    )
    args = parser.parse_args(argv)
    failed = False
    for dist in args.dists:
        report = check(dist, args.forbid_path, args.src)
        print(report.format())
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
