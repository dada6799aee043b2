"""Write-then-rename helpers, so a killed job never leaves a truncated output behind; reads that
verify each file's checksum, so a damaged one is never used; and an exclusive lock on a folder,
so two jobs never write one checkpoint.

Each kind of file carries its checksum where its own readers never see it: a ``.pt`` file (a zip)
the CRC-32 of each record; a PNG the CRC-32 of each chunk; a JSON object a first key ``sha256``
(of the file, that value zeroed); a table (TSV, CSV) a ``<name>.sha256`` file beside it, in the
format of ``sha256sum``, so that any tool reads the table as before and ``sha256sum -c`` checks it.

No torch at import time: the workflow imports the package when it builds the DAG.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wcgan.errors import WcganError

_UMASK = os.umask(0o022)  # read the process umask (os.umask can only set it), then restore it
os.umask(_UMASK)


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: str | os.PathLike) -> Path:
    """The ``sha256sum`` file beside a table: ``metrics.tsv`` -> ``metrics.tsv.sha256``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, checksum: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``checksum=True`` writes ``checksum_path(path)`` first: a kill between the two renames
    leaves a checksum the old file does not match, which ``read_checked`` refuses.
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
            if checksum:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
                with atomic_open(checksum_path(path), "w", encoding="ascii") as sums:
                    sums.write(f"{digest}  {path.name}\n")
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
        names_by_folder.setdefault(path.parent, set()).update((path.name, checksum_path(path).name))
    for folder, names in names_by_folder.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                target = entry.name[1:-4].rpartition(".")[0]  # .<name>.<random>.tmp
                if target in names:
                    Path(entry.path).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", checksum: bool = False, **kwargs: Any
) -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only once it is complete
    (``checksum``: with its ``sha256sum`` file, as ``atomic_path``)."""
    with atomic_path(path, checksum=checksum) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


_UNCHECKED_KINDS: set[str] = set()


def _read_unchecked(path: Path, what: str, missing: str) -> None:
    """Say on stderr, once per kind of file, that a file without its checksum is read
    unchecked: a run's files from before wcgan wrote checksums stay usable (refusing them would
    mean retraining every label to remake its summary)."""
    if what not in _UNCHECKED_KINDS:
        _UNCHECKED_KINDS.add(what)
        print(
            f"wcgan: {what} '{path}' has no checksum ({missing}): a file from before wcgan wrote "
            f"them; it and any other {what} without one are read unchecked",
            file=sys.stderr,
            flush=True,
        )


def read_checked(path: str | os.PathLike, what: str) -> str:
    """The text of a table written with ``checksum=True``, once it matches its ``sha256sum``
    file; else one line naming the file. A table without one is read unchecked, said once per
    kind of file."""
    path = _existing(path, what)
    data = path.read_bytes()
    sums = checksum_path(path)
    if not sums.is_file():
        _read_unchecked(path, what, f"no '{sums.name}' beside it")
    elif sums.read_bytes().split(maxsplit=1)[:1] != [hashlib.sha256(data).hexdigest().encode()]:
        raise _damaged(path, what, f"its SHA-256 differs from the one in '{sums.name}'")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _damaged(path, what, str(exc)) from None


_UNSET_DIGEST = '"sha256": "' + "0" * 64 + '"'


def write_json(record: dict[str, Any], path: str | os.PathLike, indent: int | None = 2) -> None:
    """``record`` as a JSON object whose first key, ``sha256``, is the SHA-256 of the file as
    written with that value zeroed: one atomic file, so a record rewritten while another process
    reads it never disagrees with its checksum."""
    if "sha256" in record:
        raise ValueError("a record written by write_json cannot have its own 'sha256' key")
    text = json.dumps({"sha256": "0" * 64, **record}, indent=indent) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text.replace(_UNSET_DIGEST, f'"sha256": "{digest}"', 1))


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A record ``write_json`` wrote, without its ``sha256`` key, once the file matches it. An
    object without that key is read unchecked, said once per kind (``read_checked``)."""
    path = _existing(path, what)
    data = path.read_bytes()
    try:
        record = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _damaged(path, what, str(exc)) from None
    if not isinstance(record, dict):
        raise _damaged(path, what, "it is not a JSON object")
    if "sha256" not in record:
        _read_unchecked(path, what, "no sha256 key")
        return record
    digest = record["sha256"]
    if not isinstance(digest, str):
        raise _damaged(path, what, "its sha256 key is not a string")
    zeroed = data.replace(f'"sha256": "{digest}"'.encode(), _UNSET_DIGEST.encode(), 1)
    if hashlib.sha256(zeroed).hexdigest() != digest:
        raise _damaged(path, what, "its SHA-256 differs from its sha256 key")
    del record["sha256"]
    return record


def check_png(path: str | os.PathLike, what: str) -> Path:
    """``path`` once every chunk of the PNG matches its CRC-32 (Pillow decodes an image without
    checking those of its pixel data)."""
    from PIL import Image

    path = _existing(path, what)
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise _damaged(path, what, str(exc)) from None
    return path


def _damaged(path: Path, what: str, detail: str) -> WcganError:
    return WcganError(
        f"{what} '{path}' cannot be read: it is damaged ({detail.rstrip('.')}) or not a file "
        f"wcgan wrote; move it away and rerun to make it again"
    )


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
        raise _damaged(path, what, str(exc)) from None
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
