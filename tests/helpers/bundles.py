"""App bundles for tests: a folder's files as the archive ``streamlit-hub deploy`` sends."""

from __future__ import annotations

import io
import tarfile
import textwrap


def tar_gz(files: dict[str, str | bytes]) -> bytes:
    """A ``.tar.gz`` of ``files`` (path -> text, dedented, or bytes), regular files only."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else textwrap.dedent(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
