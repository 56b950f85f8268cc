"""Build definition for threadloom's native core.

Metadata lives in pyproject.toml; this file only describes the extension.
A platform wheel is never built without it: a compile error fails the build,
with a message that says what to install (see _BuildExt).

Build switches (environment variables):
  THREADLOOM_DEBUG=1             -O0 -g3, assertions on, Cython line tracing off
  THREADLOOM_SANITIZE=address    AddressSanitizer (also: undefined, thread)
  THREADLOOM_CYTHON_ANNOTATE=1   write the Cython HTML annotation next to the .pyx

Without them the build is a release build: -O2, no debug information (-g0:
Python's own CFLAGS carry -g, and a later -g0 overrides it), symbols stripped
on Linux, and no run path into the build machine's Python.
"""

from __future__ import annotations

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

debug = os.environ.get("THREADLOOM_DEBUG", "") not in ("", "0")
sanitize = os.environ.get("THREADLOOM_SANITIZE", "").strip()
release = not (debug or sanitize)

extra_compile_args: list[str] = []
extra_link_args: list[str] = []
define_macros: list[tuple[str, str | None]] = []

if sys.platform == "win32":
    # C11 atomics need MSVC's experimental switch (msgspec does the same).
    # MSVC release builds carry no debug information unless /Zi or /Z7 is given.
    extra_compile_args += ["/std:c11", "/experimental:c11atomics"]
else:
    extra_compile_args += ["-std=c11"]
    if release:
        extra_compile_args += ["-O2", "-g0"]
        if sys.platform.startswith("linux"):
            # The symbol table is only for debuggers and profilers; the module's
            # one exported symbol (PyInit__core) lives in .dynsym and stays.
            extra_link_args.append("-s")
    else:
        extra_compile_args += ["-O0", "-g3", "-fno-omit-frame-pointer", "-UNDEBUG"]
        define_macros.append(("THREADLOOM_DEBUG", "1"))
    if sanitize:
        extra_compile_args.append(f"-fsanitize={sanitize}")
        extra_link_args.append(f"-fsanitize={sanitize}")

NO_COMPILER_HELP = """\
threadloom's native core could not be built: {error}

Installing threadloom from source needs a C11 compiler and the headers of the
Python it is installed into:
  Debian, Ubuntu:    apt-get install gcc python3-dev
  Fedora, RHEL:      dnf install gcc python3-devel
  Alpine:            apk add build-base python3-dev
  macOS:             xcode-select --install
  Windows:           Build Tools for Visual Studio ("Desktop development with C++")
Or install a prebuilt wheel instead: pip install --only-binary=threadloom threadloom
If a compiler and the headers are installed, the error above is a bug in
threadloom: please report it with this output."""


class _BuildExt(build_ext):
    """Release flags the compiler configuration would otherwise override, and
    a build failure that says what to install."""

    def build_extensions(self) -> None:
        linker = getattr(self.compiler, "linker_so", None)
        if release and isinstance(linker, list):
            # pyenv's and some distributions' Pythons put -Wl,-rpath,<their lib>
            # into LDSHARED.  The core links no library of theirs, and a path
            # on the build machine has no place in a wheel.
            self.compiler.linker_so = [arg for arg in linker if not arg.startswith("-Wl,-rpath")]
        try:
            super().build_extensions()
        except (CCompilerError, ExecError, PlatformError) as exc:
            # Falling back to the pure-Python core here would hide a much slower
            # install behind a warning nobody reads, and pip would cache that
            # build and reuse it after a compiler is installed: fail instead,
            # and say how to get the real one.
            raise CCompilerError(NO_COMPILER_HELP.format(error=exc)) from exc


extension = Extension(
    "threadloom.core._core",
    sources=["src/threadloom/core/_core.pyx"],
    include_dirs=["csrc"],
    depends=[
        "csrc/tl_queue.h",
        "csrc/tl_atomic.h",
        "src/threadloom/core/_core.pxd",
        "src/threadloom/core/_core_managed.pxi",
        "src/threadloom/core/_core_sqlite.pxi",
    ],
    # dlopen/dlsym (the history's native SQLite writes): in libdl before glibc 2.34.
    libraries=["dl"] if sys.platform.startswith("linux") else [],
    define_macros=define_macros,
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(
    cmdclass={"build_ext": _BuildExt},
    ext_modules=cythonize(
        [extension],
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "boundscheck": debug,
            "wraparound": False,
            "freethreading_compatible": True,
        },
        annotate=os.environ.get("THREADLOOM_CYTHON_ANNOTATE", "") not in ("", "0"),
    ),
)
