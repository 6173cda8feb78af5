"""Compatibility: the file helpers live in :mod:`attnprompt.files`, by concern.

This module re-exports their public names (it shadows the standard library's ``io`` in name
only: inside the package, ``io`` still means the standard library).
"""

from . import files as _files
from .files import *  # noqa: F403 - exactly files.__all__
from .files.durable import _atomic_write  # noqa: F401 - a private name some tests reach for

__all__ = list(_files.__all__)
