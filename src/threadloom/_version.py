"""The version, in one place: pyproject.toml reads it (setuptools ``attr``, without
importing the package), ``threadloom.__version__`` and ``threadloom --version``
re-export it."""

__version__ = "0.1.0"
