"""Publishing a run's outputs as one consistent set.

An output directory ``DIR`` holds every run's files in ``DIR/runs/<run id>/``
and a symbolic link ``DIR/current`` to the published one; ``DIR/alerts.jsonl``,
``DIR/summary.json`` and the other names are links through ``current``. A run
writes into ``DIR/runs/<run id>.partial/``, fsyncs every file, writes
``manifest.json`` (each file's size and SHA-256) last, renames the directory
to its final name and then swaps ``current`` with one ``rename(2)``, the
atomic step: a reader resolving ``DIR/current`` sees the previous complete
set or the new one, never a mix, whenever the writer is killed. A run that
analysed nothing (every desk failed) is not published, so an empty result
never replaces a good one. Leftover ``.partial`` directories of killed runs
are removed by the next run; the last ``keep`` published runs are kept.

Readers that want a consistent set open ``DIR/current/manifest.json`` (or
resolve ``DIR/current`` once) and read the files it lists from there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Iterable
from pathlib import Path

from ..errors import OutputError

__all__ = ["MANIFEST", "RunDirectory", "read_manifest", "verify_manifest"]

MANIFEST = "manifest.json"
CURRENT = "current"
RUNS = "runs"
PARTIAL = ".partial"
#: Test hook: ``SURV_PAUSE_AT=<point>`` stops the process (SIGSTOP) when it
#: reaches that publishing step, so a crash test can SIGKILL it exactly there.
ENV_PAUSE_AT = "SURV_PAUSE_AT"


def _pause_point(name: str) -> None:
    if os.environ.get(ENV_PAUSE_AT) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class RunDirectory:
    """``DIR`` as a set of published runs (see the module docstring).

    ``begin()`` gives the staging directory to write into; ``commit()``
    publishes it; ``abort()`` throws it away (the previous set stays)."""

    def __init__(self, root: str | os.PathLike[str], *, keep: int = 5) -> None:
        self.root = Path(root)
        self.keep = max(int(keep), 1)
        self.run_id: str | None = None
        self.staging: Path | None = None

    def begin(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            runs = self.root / RUNS
            runs.mkdir(exist_ok=True)
            for stale in runs.glob(f"*{PARTIAL}"):  # killed runs' leftovers
                shutil.rmtree(stale, ignore_errors=True)
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
            self.run_id = f"{stamp}-{os.getpid()}"
            self.staging = runs / f"{self.run_id}{PARTIAL}"
            self.staging.mkdir()
        except FileExistsError:
            raise OutputError(f"--out {self.root} exists and is not a directory") from None
        except OSError as exc:
            raise OutputError(f"cannot prepare output directory {self.root}: {exc}") from None
        return self.staging

    def shown_as(self, path: str | os.PathLike[str]) -> str:
        """Where a staged file will be read from once published (``DIR/<name>``)."""
        p = Path(path)
        if self.staging is not None and p.parent == self.staging:
            return str(self.root / p.name)
        return str(p)

    def commit(self) -> dict[str, dict[str, object]]:
        """Publish the staged files; returns the manifest's file table."""
        staging = self._staging()
        try:
            files: dict[str, dict[str, object]] = {}
            for f in sorted(p for p in staging.iterdir() if p.is_file()):
                _fsync_path(f)
                files[f.name] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
            _pause_point("before_manifest")
            manifest = {"run_id": self.run_id, "files": files}
            tmp = staging / (MANIFEST + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(manifest, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(staging / MANIFEST)
            _fsync_path(staging)
            final = staging.with_name(str(self.run_id))
            staging.rename(final)
            _fsync_path(final.parent)
            _pause_point("before_swap")
            link = self.root / f".{CURRENT}.{self.run_id}"
            os.symlink(Path(RUNS) / str(self.run_id), link)
            os.replace(link, self.root / CURRENT)  # the atomic switch
            _fsync_path(self.root)
            _pause_point("after_swap")
            self._link_names([*files, MANIFEST])
            self._prune()
        except OSError as exc:
            raise OutputError(f"cannot publish the outputs in {self.root}: {exc}") from None
        self.staging = None
        return files

    def abort(self) -> None:
        """Drop the staged files: the previously published set stays as it was."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def _staging(self) -> Path:
        if self.staging is None:
            raise RuntimeError("RunDirectory.commit() without begin()")
        return self.staging

    def _link_names(self, names: Iterable[str]) -> None:
        """``DIR/<name> -> current/<name>`` for each published name (once; a
        stage-1 regular file of that name is replaced by the link)."""
        for name in names:
            top = self.root / name
            target = Path(CURRENT) / name
            if top.is_symlink() and Path(os.readlink(top)) == target:
                continue
            tmp = self.root / f".{name}.link"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(target, tmp)
            os.replace(tmp, top)

    def _prune(self) -> None:
        runs = self.root / RUNS
        published = sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.endswith(PARTIAL))
        current = os.path.realpath(self.root / CURRENT)
        for old in published[: -self.keep]:
            if os.path.realpath(old) != current:
                shutil.rmtree(old, ignore_errors=True)


def read_manifest(root: str | os.PathLike[str]) -> dict[str, object] | None:
    """The published set's manifest (None before the first publication)."""
    path = Path(root) / CURRENT / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def verify_manifest(root: str | os.PathLike[str]) -> list[str]:
    """Problems with the published set (empty: every listed file is there
    with its size and checksum, read through one resolution of ``current``)."""
    base = Path(os.path.realpath(Path(root) / CURRENT))
    try:
        manifest = json.loads((base / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"no readable manifest in {base}: {exc}"]
    problems = []
    for name, meta in manifest["files"].items():
        f = base / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif f.stat().st_size != meta["bytes"] or _sha256(f) != meta["sha256"]:
            problems.append(f"{name}: size or checksum differs from the manifest")
    return problems
