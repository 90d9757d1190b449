"""A content-addressed response cache that many processes, on many hosts, can share.

One JSON file per key, written to a temporary name and renamed into place, so a
reader never sees a torn record and a killed writer loses only the answer it was
waiting for. A per-key lock file (O_CREAT | O_EXCL, atomic on local and NFSv3+
filesystems) makes sure that only one worker pays for a key at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path


def cache_key(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, root: str | Path, stale_after_s: float = 3600.0):
        self.root = Path(root)
        self.stale_after_s = stale_after_s
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def put(self, key: str, value: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(value, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    # Locks -----------------------------------------------------------------

    def _lock_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.lock"

    def try_lock(self, key: str) -> bool:
        """Claim the right to compute `key`. False if another live worker holds it."""
        lock = self._lock_path(key)
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._is_stale(lock):
                    lock.unlink(missing_ok=True)
                    continue
                return False
            with os.fdopen(fd, "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "t": time.time()}, handle)
            return True
        return False

    def unlock(self, key: str) -> None:
        self._lock_path(key).unlink(missing_ok=True)

    def _is_stale(self, lock: Path) -> bool:
        try:
            owner = json.loads(lock.read_text())
            age = time.time() - lock.stat().st_mtime
        except (OSError, ValueError):
            return False  # being written right now, or just released
        if owner.get("host") == socket.gethostname():
            return not _pid_alive(owner.get("pid", -1))
        return age > self.stale_after_s

    def wait_for(self, key: str, poll_s: float = 0.5) -> dict | None:
        """Wait while another worker holds the lock; its answer, or None if it gave up."""
        while True:
            value = self.get(key)
            if value is not None:
                return value
            lock = self._lock_path(key)
            if not lock.exists() or self._is_stale(lock):
                return self.get(key)
            time.sleep(poll_s)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
