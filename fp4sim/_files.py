"""Directories that appear whole or not at all: an export, a report (nothing is ever left half-written)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(out: Path, replace: bool) -> Iterator[Path]:
    """Yield a staging directory beside `out`; on success rename it to `out`, on any failure (Ctrl-C included)
    delete it.

    With `replace`, an existing `out` is moved aside first and deleted only once the new one is in place; the
    caller checks beforehand that `out` may be replaced. A process killed outright (SIGKILL) can leave only a
    hidden ``.<name>.partial-*`` directory, never a half-written `out`.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        if out.exists() and replace:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
