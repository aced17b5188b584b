"""The ``attsolver`` command line: every command's parser and handler, the loading of a
user's right-hand side (``--rhs module:function``) and the demo."""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
