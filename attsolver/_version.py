"""The library's version: one home, read by the package face, every file writer and
``pyproject.toml`` (``[tool.setuptools.dynamic]``)."""

__version__ = "0.1.0"
