"""Folders staged at synth for assets (Lambda code, the job image's build context).

Named by a hash of their content, so repeated synths reuse them and an asset's hash only
changes when its content does.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path


def stage_folder(prefix: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (relative path -> bytes) into a content-named temp folder, once."""
    digest = hashlib.sha256(b"".join(k.encode() + b"\0" + v for k, v in sorted(files.items()))).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"{prefix}-{digest}"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        try:
            tmp.rename(out)
        except OSError:  # a concurrent synth staged the same content meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return out
