"""Sources (the pipeline's seam) for Parquet, CSV, frames and standard input.

Each yields validated ``(TradeBatch, Quarantine)`` chunks for one desk, as
:class:`surv_kernel.pipeline.FileSource` does for JSON: a Parquet source one
per row group, a CSV source one per ``chunk_size`` block, so memory follows
the chunk and never the file.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from ..batch import Dictionaries, TradeBatch
from ..ingest import Quarantine, decode_feed, iter_feed
from ..pipeline.sources import FileSource
from .arrow import iter_arrow
from .readers import iter_csv, iter_parquet, parquet_files, to_arrow

__all__ = ["CsvSource", "FrameSource", "ParquetSource", "StdinSource", "sniff_format"]

Chunks = Iterator[tuple[TradeBatch, Quarantine]]

_PARQUET_MAGIC = b"PAR1"


class ParquetSource:
    """A Parquet file, or a directory of them (a hive partition such as
    ``history/desk=fx``), read one row group at a time. The desk is the file
    stem (the partition's ``desk=`` value for a directory) unless given."""

    def __init__(self, path: str | os.PathLike[str], desk: str | None = None) -> None:
        self.path = Path(path)
        if desk is None:
            name = self.path.name if self.path.is_dir() else self.path.stem
            desk = name[len("desk=") :] if name.startswith("desk=") else name
        self.desk = str(desk)
        try:
            files = parquet_files(self.path)
            self.size: int | None = sum(f.stat().st_size for f in files)
            # rows from the footers (cheap): progress as the share of rows read
            self.rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        except (OSError, pa.ArrowInvalid):
            self.size = None  # reading says what is wrong
            self.rows = 0

    @property
    def where(self) -> str:
        return str(self.path)

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Any = None
    ) -> Chunks:
        done = 0
        for batch, q in iter_parquet(self.path, desk=self.desk, dictionaries=dictionaries):
            done += len(batch) + q.total
            if progress is not None and self.rows:
                progress.update(self.desk, (self.size or 0) * done // self.rows, len(batch))
            yield batch, q
        if progress is not None:
            progress.update(self.desk, self.size or 0, 0, done=True)

    def __repr__(self) -> str:
        return f"ParquetSource({str(self.path)!r}, desk={self.desk!r})"


class CsvSource(FileSource):
    """A CSV file with a header row, read ``chunk_size`` bytes at a time (at
    least 64 KiB: pyarrow's block)."""

    def read_chunks(self, f: Any, dictionaries: Dictionaries, chunk_size: int) -> Any:
        return iter_csv(
            f, desk=self.desk, dictionaries=dictionaries, block_size=max(chunk_size, 1 << 16)
        )


class FrameSource:
    """One desk's trades as a polars or pandas DataFrame or Arrow data."""

    size = None

    def __init__(self, desk: Any, data: Any, *, timestamp_unit: str = "s") -> None:
        self.desk = str(desk)
        self.data = data
        self.timestamp_unit = timestamp_unit

    @property
    def where(self) -> str:
        return f"{type(self.data).__module__.split('.')[0]} frame"

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Any = None
    ) -> Chunks:
        yield from iter_arrow(
            to_arrow(self.data),
            desk=self.desk,
            dictionaries=dictionaries,
            timestamp_unit=self.timestamp_unit,
        )


def sniff_format(head: bytes) -> str:
    """``"parquet"``, ``"json"`` or ``"csv"`` from a feed's first bytes."""
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"[", b"{"):
        return "json"
    return "csv"


class StdinSource:
    """A feed on standard input (``-`` on the command line): JSON or NDJSON
    is streamed in chunks; CSV streamed by block; Parquet (its footer is at
    the end) is read whole into memory first. The desk is ``stdin``."""

    size = None
    path = Path("-")

    def __init__(self, desk: str = "stdin", stream: BinaryIO | None = None) -> None:
        self.desk = desk
        self.stream = stream

    @property
    def where(self) -> str:
        return "standard input"

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Any = None
    ) -> Chunks:
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        head = stream.read(4)
        fmt = sniff_format(head)
        if fmt == "parquet":
            data = io.BytesIO(head + stream.read())
            yield from iter_parquet(data, desk=self.desk, dictionaries=dictionaries)
            return
        rest = _Prefixed(head, stream)
        if fmt == "json":
            if not head:
                yield decode_feed(b"", desk=self.desk, dictionaries=dictionaries)
                return
            yield from iter_feed(rest, chunk_size, desk=self.desk, dictionaries=dictionaries)
        else:
            yield from iter_csv(
                rest, desk=self.desk, dictionaries=dictionaries, block_size=max(chunk_size, 1 << 16)
            )


class _Prefixed(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of the stream."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        # a short read is a whole block to pyarrow's CSV reader: give the
        # sniffed head together with the bytes after it, never on its own
        head, self.head = self.head, b""
        if n is None or n < 0:
            return head + self.stream.read()
        if len(head) >= n:
            out, self.head = head[:n], head[n:]
            return out
        return head + self.stream.read(n - len(head))

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
