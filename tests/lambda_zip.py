"""A Lambda deployment package made from source text, for tests and benchmarks."""

from __future__ import annotations

import io
import textwrap
import zipfile


def zip_of(source: str, name: str = "handler.py") -> bytes:
    """A zip holding `source` (dedented) as `name`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, textwrap.dedent(source))
    return buffer.getvalue()
