"""The state folder `katagate up` keeps everything in (Kafka's data, the projector's database,
the keys, the console's password): private to the user who runs the gateway."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from katagate.schemas.errors import KatagateError

MODE = 0o700


class StateFolderError(KatagateError):
    """The state folder cannot be made private."""


def prepare_state_folder(path: Path) -> str | None:
    """Make `path` (mode 0700) or tighten an existing one to 0700; return a note when it was
    tightened. Refuses a path that is not a folder or that belongs to another user: chmod would
    fail there anyway, and that user could read or swap what we keep in it."""
    try:
        path.mkdir(mode=MODE, parents=True)
    except FileExistsError:
        pass
    else:
        path.chmod(MODE)  # mkdir's mode is masked by the umask
        return None
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateFolderError(f"state folder {path} ([paths] state_dir): not a folder")
    if info.st_uid != os.geteuid():
        raise StateFolderError(
            f"state folder {path} ([paths] state_dir) belongs to uid {info.st_uid}, not to you "
            f"(uid {os.geteuid()}): choose a folder of your own")
    old = stat.S_IMODE(info.st_mode)
    if old == MODE:
        return None
    path.chmod(MODE)
    return f"state folder {path}: mode {old:04o} tightened to {MODE:04o}"
