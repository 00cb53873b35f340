"""Small file helpers shared by the daemons."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def atomic_write_text(path: Path | str, text: str, fsync: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically (write a temp file beside it, then rename), so a
    reader sees the old or the new content, never half of one. ``fsync`` makes it durable across
    a power cut (use it under /var/lib, not on tmpfs)."""
    path = Path(path)
    # unique per writer (process and thread), so concurrent writers never share a temp file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
