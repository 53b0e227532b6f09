"""Sources: where one desk's trades come from.

A :class:`Source` yields validated :class:`~surv_kernel.batch.TradeBatch`
chunks plus their quarantine for one desk, through ingest's one set of rules
(:mod:`surv_kernel.ingest`). The kinds today: a feed file
(:class:`FileSource`, JSON array or NDJSON, streamed in chunks), a feed in
memory (:class:`BytesSource`), the legacy ``_api_call`` desk feed with
retries (:class:`CallSource`), legacy trade dicts (:class:`DictsSource`), and
one desk's feeds in several parts (:class:`ConcatSource`). A new format is
one more class here that parses into columns and hands them to ingest's
validation; the engines and sinks never know the format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..batch import Dictionaries, TradeBatch
from ..errors import ConfigError, InputError
from ..ingest import FeedError, Quarantine, columns_from_dicts, decode_feed, iter_feed

__all__ = [
    "FEED_SUFFIXES",
    "FRAME_SUFFIXES",
    "BytesSource",
    "CallSource",
    "ConcatSource",
    "DictsSource",
    "FileSource",
    "Progress",
    "Source",
    "resolve_feeds",
]

#: File suffixes taken from a directory of desk feeds.
FEED_SUFFIXES = (".json", ".ndjson", ".jsonl")
#: Columnar feed suffixes (read by :mod:`surv_kernel.frames`, needs pyarrow).
FRAME_SUFFIXES = (".parquet", ".csv")

Chunks = Iterator[tuple[TradeBatch, Quarantine]]


class Progress(Protocol):
    """What a source reports while it reads (the CLI draws a progress line)."""

    def update(self, desk: str, position: int, trades: int = 0, done: bool = False) -> None: ...

    def reset(self) -> None: ...


@runtime_checkable
class Source(Protocol):
    """One desk's trades."""

    #: The desk name: the ``desk`` of every row and quarantine record.
    desk: str
    #: Bytes to read when known (progress), else None.
    size: int | None

    @property
    def where(self) -> str:
        """Where the trades come from, for messages (a path, "feed call", ...)."""
        ...

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        """Validated chunks and their quarantine, in feed order."""
        ...


class FileSource:
    """A desk feed file (JSON array or NDJSON), read ``chunk_size`` bytes at a
    time: memory follows the chunk, not the file. The desk is the file stem
    unless given."""

    def __init__(self, path: str | os.PathLike[str], desk: str | None = None) -> None:
        self.path = Path(path)
        self.desk = self.path.stem if desk is None else str(desk)
        try:
            self.size: int | None = self.path.stat().st_size
        except OSError:
            self.size = None

    @property
    def where(self) -> str:
        return str(self.path)

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        with open(self.path, "rb") as f:
            for batch, q in self.read_chunks(f, dictionaries, chunk_size):
                if progress is not None:
                    progress.update(self.desk, f.tell(), len(batch))
                yield batch, q
        if progress is not None:
            progress.update(self.desk, self.size or 0, 0, done=True)

    def read_chunks(self, f: Any, dictionaries: Dictionaries, chunk_size: int) -> Chunks:
        """The file's chunks (the format's reader; a CSV source has its own)."""
        return iter_feed(f, chunk_size, desk=self.desk, dictionaries=dictionaries)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, desk={self.desk!r})"


class BytesSource:
    """A desk feed already in memory (bytes or str; JSON array or NDJSON)."""

    def __init__(self, desk: Any, data: Any) -> None:
        self.desk = str(desk)
        self.data = data
        self.size = len(data) if isinstance(data, (bytes, bytearray, memoryview, str)) else None

    @property
    def where(self) -> str:
        return "feed in memory"

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        if not isinstance(self.data, (str, bytes, bytearray, memoryview)):
            raise FeedError(
                f"desk {self.desk!r}: the feed is a {type(self.data).__name__}, "
                "not JSON text or bytes"
            )
        yield decode_feed(self.data, desk=self.desk, dictionaries=dictionaries)


class CallSource:
    """The legacy desk feed: ``fetch()`` returns the feed (the received
    ``_api_call`` wrapped in retries, e.g. ``surv_kernel.pipeline.fetch_trade_feed``);
    a fetch that fails raises, and the desk fails with it."""

    size = None

    def __init__(self, desk: Any, fetch: Callable[[], Any]) -> None:
        self.key = desk  # the caller's desk id (legacy ids need not be str)
        self.desk = str(desk)
        self.fetch = fetch

    @property
    def where(self) -> str:
        return "feed call"

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        feed = self.fetch()
        yield from BytesSource(self.desk, feed).batches(dictionaries, chunk_size=chunk_size)


class DictsSource:
    """Legacy trade dicts (what ``detect_anomalies`` receives), with the
    legacy tolerances of :func:`surv_kernel.columns_from_dicts`."""

    size = None

    def __init__(self, desk: Any, trades: Sequence[Any]) -> None:
        self.desk = "" if desk is None else str(desk)
        self.trades = trades

    @property
    def where(self) -> str:
        return "trade dicts"

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        desk = self.desk or None
        yield columns_from_dicts(
            self.trades, desk=desk, dictionaries=dictionaries, return_quarantine=True
        )


class ConcatSource:
    """One desk's feeds in several parts (files or bytes), read in the order
    given into one run of chunks, as the live run saw them."""

    def __init__(self, desk: Any, parts: Sequence[Source]) -> None:
        self.desk = str(desk)
        self.parts = list(parts)
        sizes = [p.size for p in self.parts]
        self.size = None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]

    @property
    def where(self) -> str:
        return " + ".join(p.where for p in self.parts)

    def batches(
        self, dictionaries: Dictionaries, *, chunk_size: int, progress: Progress | None = None
    ) -> Chunks:
        for part in self.parts:
            yield from part.batches(dictionaries, chunk_size=chunk_size)


def resolve_feeds(
    paths: Sequence[str | os.PathLike[str]], what: str = "feed", *, unique_desks: bool = True
) -> list[FileSource]:
    """Files as given, directories expanded to their feed files (sorted by name).

    JSON feeds (``*.json``, ``*.ndjson``, ``*.jsonl``) become
    :class:`FileSource`; ``*.parquet`` and ``*.csv`` the sources of
    :mod:`surv_kernel.frames.sources` (pyarrow). In a directory, each
    ``desk=NAME`` subdirectory (a hive partition) is one Parquet source for
    desk NAME; a directory holding Parquet files only deeper down is one
    source. ``-`` is standard input (JSON, NDJSON, CSV or Parquet, sniffed).

    Raises :class:`~surv_kernel.errors.InputError` for a missing path, a
    directory without feed files or an unreadable file, and
    :class:`~surv_kernel.errors.ConfigError` for two feeds with the same desk
    name when ``unique_desks`` (a run reads one feed per desk; a history may
    hold several days of each desk).
    """
    out: list[Any] = []
    suffixes = FEED_SUFFIXES + FRAME_SUFFIXES
    for raw in paths:
        p = Path(raw)
        if str(raw) == "-":
            out.append(_frames().StdinSource())
            continue
        if p.is_dir() and p.name.startswith("desk="):
            files = [p]  # one hive partition: one desk, its Parquet files below
        elif p.is_dir():
            # a hive layout (DIR/desk=NAME/...parquet): one source per partition
            hive = sorted(f for f in p.iterdir() if f.is_dir() and f.name.startswith("desk="))
            files = hive + sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes
            )
            if not files and any(p.rglob("*.parquet")):
                files = [p]  # a Parquet dataset partitioned otherwise: one desk
            if not files:
                listed = ", ".join(f"*{s}" for s in suffixes)
                raise InputError(
                    f"no {what} files ({listed}, or desk=NAME partitions) in directory {raw}"
                )
        elif p.exists():
            if not p.is_file():
                raise InputError(f"{what} {raw} is not a regular file")
            files = [p]
        else:
            raise InputError(f"{what} file not found: {raw}")
        for f in files:
            if not os.access(f, os.R_OK):
                raise InputError(f"cannot read {what} file {f}: permission denied")
            out.append(_source_for(f))
    seen: dict[str, Path] = {}
    for src in out if unique_desks else ():
        if src.desk in seen:
            raise ConfigError(
                f"desk {src.desk!r} given twice ({seen[src.desk]} and {src.path}): the desk name "
                "is the file stem, so rename one of them"
            )
        seen[src.desk] = src.path
    return out


def _frames() -> Any:
    """:mod:`surv_kernel.frames.sources`, imported only for a columnar feed
    (pyarrow is an optional extra: say how to get it)."""
    try:
        from ..frames import sources
    except ImportError as exc:
        raise InputError(
            f"Parquet and CSV feeds need pyarrow ({exc}): pip install 'surv_kernel[arrow]'"
        ) from None
    return sources


def _source_for(path: Path) -> Any:
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        return _frames().ParquetSource(path)
    if suffix == ".csv":
        return _frames().CsvSource(path)
    return FileSource(path)
