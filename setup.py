"""Build definition for threadloom's native core.

Metadata lives in pyproject.toml; this file only describes the extension.
A platform wheel is never built without it: a compile error fails the build.

Build switches (environment variables):
  THREADLOOM_DEBUG=1             -O0 -g3, assertions on, Cython line tracing off
  THREADLOOM_SANITIZE=address    AddressSanitizer (also: undefined, thread)
  THREADLOOM_CYTHON_ANNOTATE=1   write the Cython HTML annotation next to the .pyx
"""

from __future__ import annotations

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("THREADLOOM_DEBUG", "") not in ("", "0")
sanitize = os.environ.get("THREADLOOM_SANITIZE", "").strip()

extra_compile_args: list[str] = []
extra_link_args: list[str] = []
define_macros: list[tuple[str, str | None]] = []

if sys.platform == "win32":
    # C11 atomics need MSVC's experimental switch (msgspec does the same).
    extra_compile_args += ["/std:c11", "/experimental:c11atomics"]
else:
    extra_compile_args += ["-std=c11"]
    if debug or sanitize:
        extra_compile_args += ["-O0", "-g3", "-fno-omit-frame-pointer", "-UNDEBUG"]
        define_macros.append(("THREADLOOM_DEBUG", "1"))
    else:
        extra_compile_args += ["-O2"]
    if sanitize:
        extra_compile_args.append(f"-fsanitize={sanitize}")
        extra_link_args.append(f"-fsanitize={sanitize}")

extension = Extension(
    "threadloom._core",
    sources=["src/threadloom/_core.pyx"],
    include_dirs=["csrc"],
    depends=[
        "csrc/tl_queue.h",
        "csrc/tl_atomic.h",
        "src/threadloom/_core.pxd",
        "src/threadloom/_core_managed.pxi",
    ],
    define_macros=define_macros,
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
)

setup(
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
