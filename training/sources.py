"""What an import covers: folders (recursive), zip archives (read in place, never extracted) and single files.

Listing comes first and is cheap, so that progress can show "n of N" from the start; bytes are read one
file at a time afterwards.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass

from training.decode import ImageRejected

MAX_FILE_BYTES = 512 * 1024 * 1024  # far above any real image; refuses what would exhaust memory first
_SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})  # OS clutter, not the user's data

SourcePaths = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


@dataclass(frozen=True)
class SourceFile:
    """One file to import: a path on disk, or a member of a zip archive at `path`."""

    path: str
    member: str | None = None

    @property
    def name(self) -> str:
        """How the report names the file; archive members read as a path inside the archive."""
        return self.path if self.member is None else f"{self.path}/{self.member}"

    @property
    def extension(self) -> str:
        return os.path.splitext(self.member if self.member is not None else self.path)[1].lower()


def list_sources(
    sources: SourcePaths, exclude: str | os.PathLike[str] | None = None
) -> tuple[list[SourceFile], list[tuple[SourceFile, str]]]:
    """Every file the sources cover, in a stable order, and the sources that could not be listed (with why).

    Hidden files and OS clutter (.DS_Store, Thumbs.db, __MACOSX) inside folders and archives are skipped;
    `exclude` (the prepared-dataset folder, when it sits inside a source folder) is not walked.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    excluded = os.path.abspath(exclude) if exclude is not None else None
    found: list[SourceFile] = []
    failed: list[tuple[SourceFile, str]] = []
    seen: set[SourceFile] = set()

    def add(source: SourceFile) -> None:
        if source not in seen:
            seen.add(source)
            found.append(source)

    for source in sources:
        path = os.path.abspath(source)
        if os.path.isdir(path):
            for file in _walk(path, excluded, failed):
                _add_file(file, add, failed)
        elif os.path.isfile(path):
            _add_file(path, add, failed)
        elif os.path.lexists(path):
            failed.append((SourceFile(path), _not_regular_reason(path) or "cannot read the file"))
        else:
            failed.append((SourceFile(path), "not found"))
    return found, failed


class SourceReader:
    """Reads files and archive members, keeping each archive open while the import runs."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._archives: dict[str, zipfile.ZipFile] = {}

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def read(self, source: SourceFile) -> bytes:
        """The file's bytes; ImageRejected with the reason when they cannot be read."""
        try:
            if source.member is None:
                return _read_file(source.path)
            return self._read_member(source)
        except ImageRejected:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, NotImplementedError, EOFError) as exc:
            raise ImageRejected(_read_error(exc)) from None

    def _read_member(self, source: SourceFile) -> bytes:
        archive = self._archives.get(source.path)
        if archive is None:
            archive = self._stack.enter_context(zipfile.ZipFile(source.path))
            self._archives[source.path] = archive
        info = archive.getinfo(source.member)
        if info.flag_bits & 0x1:
            raise ImageRejected("encrypted in the zip archive (extract it with its password first)")
        mode = info.external_attr >> 16  # Unix permissions and file type; many tools leave the type 0
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise ImageRejected(f"not a regular file in the zip archive ({_file_kind(mode)})")
        _check_size(info.file_size)
        return archive.read(info)  # zipfile stops at the declared size, so a lying entry cannot read more


def _walk(folder: str, excluded: str | None, failed: list[tuple[SourceFile, str]]) -> Iterable[str]:
    def unreadable(error: OSError) -> None:
        failed.append((SourceFile(str(error.filename)), f"cannot read the folder ({_os_reason(error)})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not _is_clutter(d) and os.path.join(root, d) != excluded)
        for name in sorted(files):
            if not _is_clutter(name):
                yield os.path.join(root, name)


def _add_file(path: str, add: Callable[[SourceFile], None], failed: list[tuple[SourceFile, str]]) -> None:
    if not path.lower().endswith(".zip"):
        add(SourceFile(path))
        return
    if reason := _not_regular_reason(path):  # opening a FIFO named .zip would wait forever for a writer
        failed.append((SourceFile(path), reason))
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info.filename for info in archive.infolist() if not info.is_dir()]
    except zipfile.BadZipFile as exc:
        failed.append((SourceFile(path), f"damaged zip archive ({exc})"))
        return
    except OSError as exc:
        failed.append((SourceFile(path), f"cannot read the file ({_os_reason(exc)})"))
        return
    for member in sorted(members):
        if not any(_is_clutter(part) for part in member.split("/")):
            add(SourceFile(path, member))


def _is_clutter(name: str) -> bool:
    return name.startswith(".") or name.lower() in _SYSTEM_FILES


def _read_file(path: str) -> bytes:
    """A regular file's bytes, never more than the size limit; pipes, sockets and devices are refused unread."""
    if reason := _not_regular_reason(path):  # decided before opening: opening a device can have effects
        raise ImageRejected(reason)
    # O_NONBLOCK: should a FIFO replace the file after the check, opening it returns instead of waiting.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageRejected(f"not a regular file ({_file_kind(info.st_mode)})")
        _check_size(info.st_size)
        data = file.read(info.st_size + 1)  # one byte more shows a file that grew since fstat
    if len(data) != info.st_size:
        raise ImageRejected("the file changed while it was read; import it again once it is complete")
    return data


def _not_regular_reason(path: str) -> str | None:
    """Why `path` (its target, for a link) is no file to read, or None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot read the file ({_os_reason(exc)})"
    return None if stat.S_ISREG(mode) else f"not a regular file ({_file_kind(mode)})"


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
    ]
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


def _check_size(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageRejected(
            f"file too large ({size / 2**20:,.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)"
        )


def _read_error(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot read the file ({_os_reason(exc)})"
    return f"unreadable in the zip archive ({exc})"


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
