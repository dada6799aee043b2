"""Write-then-rename helpers, so a killed job never leaves a truncated output behind; reads that
verify each ``.pt`` file's checksums, so a damaged one is never used; and an exclusive lock on a
folder, so two jobs never write one checkpoint.

No torch at import time: the workflow imports the package when it builds the DAG.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import socket
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wcgan.errors import WcganError

_UMASK = os.umask(0o022)  # read the process umask (os.umask can only set it), then restore it
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; results are shared
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(*paths: str | os.PathLike) -> None:
    """Delete the temporary files that killed writers of ``paths`` left behind (``atomic_path``'s
    ``.<name>.<random>.tmp``): each folder is listed once, however many of its files are named."""
    names_by_folder: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        names_by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in names_by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                target = entry.name[1:-4].rpartition(".")[0]  # .<name>.<random>.tmp
                if target in names:
                    Path(entry.path).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only once it is complete."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file and an atomic rename."""
    import torch  # here, not at the top: the workflow imports this package without torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# Records above this size are left unread by a read of the header only (``check_large=False``).
HEADER_RECORD_BYTES = 1 << 20


def load_torch(path: str | os.PathLike, what: str, mmap: bool = False, check_large: bool = True) -> Any:
    """``torch.load(weights_only=True)`` of a file ``torch.save`` wrote, with a one-line error
    naming the file when it is unusable.

    Every record of the file (torch writes a zip: the pickle, then one record per tensor) is
    first read against the CRC-32 the zip stores for it, which ``torch.load`` never checks: a
    block of a tensor overwritten in place, same length, would load without error.
    ``check_large=False`` skips records over ``HEADER_RECORD_BYTES``, for a reader of a shard's
    header that never uses its images. ``mmap=True`` maps tensors instead of reading them.
    torch's own message is left out of that line: it advises loading with ``weights_only=False``,
    which runs whatever code the file holds; a file wcgan wrote never needs that.
    """
    path = _existing(path, what)
    _check_records(path, path, what, None if check_large else HEADER_RECORD_BYTES)
    return _load(path, path, what, mmap=mmap)


def load_tagged(
    path: str | os.PathLike,
    what: str,
    tags: str | tuple[str, ...],
    made_by: str,
    mmap: bool = False,
    check_large: bool = True,
) -> dict[str, Any]:
    """``load_torch`` of a file wcgan wrote: a dict whose ``format`` is one of ``tags`` (each
    kind's format tag, with its version), refused in one line naming the command that makes it."""
    data = load_torch(path, what, mmap=mmap, check_large=check_large)
    return check_tagged(data, path, what, tags, made_by)


def check_tagged(
    data: Any, path: str | os.PathLike, what: str, tags: str | tuple[str, ...], made_by: str
) -> dict[str, Any]:
    """``data`` loaded from ``path`` when it is what ``load_tagged`` accepts, else its error."""
    known = (tags,) if isinstance(tags, str) else tags
    if not isinstance(data, dict) or data.get("format") not in known:
        raise WcganError(f"{what} '{path}' is not a wcgan {what} file (made by {made_by})")
    return data


def load_torch_hashed(path: str | os.PathLike, what: str) -> tuple[Any, str]:
    """``load_torch`` of a file read once, with the SHA-256 of the very bytes it loaded: a file
    replaced while it is read cannot make the digest and the contents disagree. A file in
    torch's former format (not a zip; such as published weights may be) has no records to check:
    its digest names it."""
    path = _existing(path, what)
    data = io.BytesIO(path.read_bytes())
    if zipfile.is_zipfile(data):
        _check_records(data, path, what, None)
    return _load(data, path, what), hashlib.sha256(data.getbuffer()).hexdigest()


def _existing(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WcganError(f"{what} '{path}' does not exist")
    return path


def _check_records(source: Path | IO[bytes], path: Path, what: str, largest: int | None) -> None:
    """Read each record of ``source`` (up to ``largest`` bytes, or all) against its CRC-32."""
    try:
        with zipfile.ZipFile(source) as archive:
            for record in archive.infolist():
                if largest is None or record.file_size <= largest:
                    with archive.open(record) as stream:
                        while stream.read(1 << 22):  # zipfile checks the CRC at the record's end
                            pass
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise WcganError(
            f"{what} '{path}' cannot be read: it is damaged ({str(exc).rstrip('.')}) or not a file "
            f"wcgan wrote; move it away and rerun to make it again"
        ) from None
    finally:
        if not isinstance(source, Path):
            source.seek(0)


def _load(source: Path | IO[bytes], path: Path, what: str, mmap: bool = False) -> Any:
    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise WcganError(
            f"{what} '{path}' cannot be read: it is damaged, truncated, or holds more than tensors "
            f"and plain values; move it away and rerun to make it again"
        ) from exc


LOCK_NAME = ".lock"  # in a locked folder: the holder's host and pid


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs; another
    process that asks for it meanwhile stops with one line naming the holder's host and pid.

    ``flock`` on ``folder/.lock``: the kernel releases it when the holder dies, even by SIGKILL,
    so a rerun after a crash never finds a stale lock. The file itself stays (removing it would
    let a third process lock a new file while the second still holds the old one).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "an unknown process"
            raise WcganError(
                f"checkpoint folder '{folder}' is in use by {holder}; wait for it to end, or stop it"
            ) from None
        except OSError as exc:  # a file system without flock (Lustre -o noflock, NFS nolock)
            raise WcganError(
                f"checkpoint folder '{folder}' cannot be locked ({exc.strerror}): its file system "
                f"has no flock; put results/ on one that has (or mount it with flock)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
