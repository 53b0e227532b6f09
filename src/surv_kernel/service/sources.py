"""Desk sources of the service: one growing NDJSON file per desk, tailed.

A desk appends trades to ``FEEDS/DESK.ndjson``, one JSON object per line.
:class:`TailSource` reads what was appended since its cursor and hands out
only *complete* lines: the bytes after the last ``\\n`` are a line the desk is
still writing, so they stay unread (the cursor does not move past them) until
their newline arrives. The cursor is ``(inode, offset)``: the file it reads
and the byte just after the last complete line it handed out. It goes into
the service checkpoint, so a restarted service reads each file on from the
same byte.

Rotation and truncation (checked at each poll, by ``stat`` of the path
against ``fstat`` of the open file):

- *rotation* (the path now names another inode: the desk renamed the file
  away and started a new one): the old file is read to its end first (a desk
  may append its last lines just before rotating; the open descriptor still
  reaches them), a partial last line of the old file is counted as
  ``torn_tail`` and dropped (no newline will ever come), then the new file
  is read from byte 0;
- *truncation* (same inode, and the size is below the cursor or the last
  bytes before the cursor changed: the desk rewrote the file; the
  fingerprint of up to 64 bytes catches a rewrite that is already as long
  as the old file at the next poll): reading restarts at byte 0; lines sent
  again are recognised by the stream's duplicate trade-id set and
  quarantined as ``duplicate_trade_id``, never accepted twice.

After a restart, a checkpointed cursor whose inode no longer matches the
path (rotated while the service was down) or whose offset is past the end
or whose fingerprint differs (truncated or rewritten while down) starts at byte 0 of the current file, for the same
reasons; the lines of a file rotated away while the service was down are not
read (the RUNBOOK's replay procedure covers it) and a warning says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Chunk", "Cursor", "TailSource", "discover"]

log = logging.getLogger(__name__)

SUFFIX = ".ndjson"


@dataclass(frozen=True)
class Cursor:
    """Where a source stands: the file (inode) and the byte after the last
    complete line handed out."""

    inode: int
    offset: int
    #: the last (up to) 64 bytes before ``offset``: a rewrite changes them
    tail: bytes = b""


@dataclass
class Chunk:
    """Complete lines read from a desk file: ``data`` ends with ``\\n``;
    ``end`` is the cursor after it."""

    desk: str
    data: bytes
    end: Cursor


def discover(feeds: Path) -> list[str]:
    """Desk names of the ``*.ndjson`` files in ``feeds`` (sorted)."""
    try:
        names = os.listdir(feeds)
    except FileNotFoundError:
        return []
    return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX) and len(n) > len(SUFFIX))


class TailSource:
    """Tails ``path`` from ``cursor`` (see the module docstring)."""

    def __init__(self, desk: str, path: Path, cursor: Cursor | None = None) -> None:
        self.desk = desk
        self.path = Path(path)
        self._fd: int | None = None
        self._inode = -1
        self._offset = 0
        self._tail = b""
        self.rotations = 0
        self.truncations = 0
        self.torn_tails = 0
        #: the last read stopped at max_bytes: the file holds more complete
        #: data already (a backlog, as after a restart)
        self.more = False
        self._resume = cursor

    # -- state ---------------------------------------------------------------------------

    @property
    def cursor(self) -> Cursor:
        return Cursor(self._inode, self._offset, self._tail)

    def size(self) -> int | None:
        """Current size of the path (None if it does not exist)."""
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return None

    def bytes_behind(self) -> int:
        """Bytes of the current file not handed out yet (a partial line included)."""
        if self._fd is None:
            return self.size() or 0
        try:
            return max(os.fstat(self._fd).st_size - self._offset, 0)
        except OSError:
            return 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading -------------------------------------------------------------------------

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self._fd, self._inode, self._offset, self._tail = fd, st.st_ino, 0, b""
        resume, self._resume = self._resume, None
        if resume is not None:
            if resume.inode == st.st_ino and resume.offset <= st.st_size:
                self._offset, self._tail = resume.offset, resume.tail
            if not self._intact():
                self._offset, self._tail = 0, b""
            if resume.offset and not self._offset:
                why = "rotated" if resume.inode != st.st_ino else "truncated"
                log.warning(
                    "desk %s: %s was %s while the service was down; reading it from byte 0",
                    self.desk,
                    self.path,
                    why,
                    extra={"event": "source_reset", "desk": self.desk, "why": why},
                )
        return True

    def poll(self, max_bytes: int) -> Chunk | None:
        """The complete lines appended since the cursor (at most about
        ``max_bytes``, always whole lines), or None when there are none."""
        self.more = False
        if self._fd is None and not self._open():
            return None
        assert self._fd is not None
        try:
            st_path = os.stat(self.path)
        except FileNotFoundError:
            st_path = None
        st_fd = os.fstat(self._fd)
        if st_path is not None and st_path.st_ino == self._inode and not self._intact():
            self.truncations += 1
            log.warning(
                "desk %s: %s was truncated or rewritten (size %d, cursor %d); reading it "
                "from byte 0",
                self.desk,
                self.path,
                st_path.st_size,
                self._offset,
                extra={"event": "source_truncated", "desk": self.desk},
            )
            self._offset, self._tail = 0, b""
        chunk = self._read(max_bytes, st_fd.st_size)
        if chunk is not None:
            return chunk
        if st_path is not None and st_path.st_ino != self._inode:
            # rotated: the old file is read to its end (above); a partial last
            # line there can never be completed
            if st_fd.st_size > self._offset:
                self.torn_tails += 1
                log.warning(
                    "desk %s: the rotated file ended in a partial line of %d bytes; dropped",
                    self.desk,
                    st_fd.st_size - self._offset,
                    extra={"event": "source_torn_tail", "desk": self.desk},
                )
            self.rotations += 1
            log.info(
                "desk %s: %s rotated; reading the new file",
                self.desk,
                self.path,
                extra={"event": "source_rotated", "desk": self.desk},
            )
            self.close()
            if self._open():
                return self._read(max_bytes, os.fstat(self._fd).st_size)  # type: ignore[arg-type]
        return None

    def _intact(self) -> bool:
        """The bytes before the cursor are still the ones read (not truncated
        or rewritten)."""
        if self._offset == 0:
            return True
        n = len(self._tail)
        got = os.pread(self._fd, n, self._offset - n)  # type: ignore[arg-type]
        return got == self._tail and os.fstat(self._fd).st_size >= self._offset  # type: ignore[arg-type]

    def _read(self, max_bytes: int, size: int) -> Chunk | None:
        self.more = False
        if size <= self._offset:
            return None
        want = min(size - self._offset, max(int(max_bytes), 1))
        data = os.pread(self._fd, want, self._offset)  # type: ignore[arg-type]
        cut = data.rfind(b"\n")
        if cut < 0:
            if want < size - self._offset:  # one line longer than max_bytes: read it whole
                data = os.pread(self._fd, size - self._offset, self._offset)  # type: ignore[arg-type]
                cut = data.rfind(b"\n")
            if cut < 0:
                return None  # a line still being written
        data = data[: cut + 1]
        self._offset += len(data)
        self.more = want < size - (self._offset - len(data))
        self._tail = (self._tail + data)[-64:]
        return Chunk(self.desk, data, self.cursor)
