"""A content-addressed response cache that many processes, on many hosts, can share.

One file per key, `<root>/<key[:2]>/<key>.json`, holding one JSON record. Whoever reads or
writes a key holds a POSIX record lock (fcntl.lockf) on that file, so:

- only one worker at a time can find a key missing and pay for it; the others wait for its
  lock and then read its answer (no duplicate paid calls);
- a record is written whole under the exclusive lock and fsynced before the lock is released,
  so no locked reader ever sees half of one; a writer killed mid-write leaves a prefix that
  does not parse as JSON, which reads as a miss and is paid for again (no torn records);
- every key has its own file, so writers of different keys never touch the same bytes
  (no lost entries);
- the kernel, or on NFS the lock manager, drops a dead process's locks: no lock outlives
  its holder, and there is no stale-lock guessing.

Why in place rather than write-to-temp + rename: a lock belongs to an inode, so a rename would
hand a waiting worker the lock of a file that is no longer in the cache. And on NFS, taking a
lock is what makes a client revalidate its cached copy of a file's data (nfs(5), "File
locking"), whereas nothing makes it revalidate a cached "no such file" for a name that
another node has just renamed into place.

The cache directory therefore needs cluster-wide POSIX locks: a local disk, NFSv3 with lockd,
NFSv4, GPFS, Lustre mounted with `-o flock`, BeeGFS with tuneUseGlobalFileLocks. POSIX locks
belong to a process, so one process must not hold the same key twice (the teacher asks one
key at a time).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def cache_key(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _read_record(fd: int, path: Path) -> dict | None:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    if not data:
        return None  # claimed by a worker that failed or was killed before it answered
    try:
        value = json.loads(data)
    except ValueError:  # includes UnicodeDecodeError
        log.warning("cache: %s holds an incomplete record (a writer was killed); asking again", path)
        return None
    return value if isinstance(value, dict) else None


class CacheEntry:
    """One key, held exclusively: what is stored for it, and a way to store it."""

    def __init__(self, fd: int, path: Path):
        self._fd = fd
        self.path = path

    def read(self) -> dict | None:
        return _read_record(self._fd, self.path)

    def write(self, value: dict) -> None:
        data = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
        os.ftruncate(self._fd, 0)
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], written)
        os.fsync(self._fd)


class ResponseCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    @contextmanager
    def hold(self, key: str, wait: bool = True) -> Iterator[CacheEntry | None]:
        """Hold `key` exclusively for the `with` block. With wait=False, yields None at once
        when another process holds it, instead of waiting for that process to finish."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if wait or err.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                yield None
                return
            yield CacheEntry(fd, path)
        finally:
            os.close(fd)  # closing the file releases the lock

    def get(self, key: str) -> dict | None:
        """The stored record for `key`, or None; waits while a writer holds the key."""
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH)
            return _read_record(fd, path)
        finally:
            os.close(fd)

    def stored_keys(self) -> list[str]:
        """Every key that has a complete record, sorted."""
        keys = (path.stem for path in self.root.glob("??/*.json"))
        return sorted(key for key in keys if self.get(key) is not None)
