"""One search at a time in a run folder: a lock beside it (STORAGE/.locks/NAME), held for the whole
life of the search's process.

A local or NFS folder is locked with flock(2) on that file: the kernel drops the lock when the
process ends, however it ends (SIGKILL and a crash too), so a lock is never stale. A bucket has no
such lock: the holder rewrites the lock object every HEARTBEAT_S seconds, and a lock is stale (its
search was killed) when its last heartbeat is older than STALE_S, or at once when its holder ran on
this machine and that process is gone; a stale lock is taken over. The lock lives
beside the run folder, not in it, so a search refused before it starts leaves no run folder behind.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import threading
import time
import uuid

from core import storage
from core.errors import UserError

HEARTBEAT_S = 30.0
STALE_S = 120.0

_held: list = []  # open lock files and heartbeats: kept until the process exits


def holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"


def lock_run_folder(lock_location: str, run_folder: str) -> None:
    """Take the run folder's lock for this process's life; UserError naming the holder if another
    search has it."""
    if storage.is_uri(lock_location):
        lock_object(lock_location, run_folder)
    else:
        lock_file(lock_location, run_folder)


def lock_file(path: str, run_folder: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 4096).decode(errors="replace").strip() or "holder unknown"
        os.close(descriptor)
        raise UserError(f"{run_folder} is in use by another search ({holder}); wait for it to end, "
                        "or pass another --name.") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, holder_text().encode())
    _held.append(descriptor)  # closing it (or the process ending) releases the lock


def lock_object(location: str, run_folder: str) -> None:
    token, holder = uuid.uuid4().hex, holder_text()
    current = read_lock(location)
    if current and not is_stale(current):
        raise UserError(f"{run_folder} is in use by another search ({current['holder']}); wait for it to end, "
                        f"or pass another --name. A killed search's lock expires {STALE_S:g} s after its last "
                        "heartbeat.")
    write_lock(location, token, holder)
    time.sleep(1.0)  # two searches that started together: the last writer wins, the other leaves
    current = read_lock(location)
    if not current or current["token"] != token:
        raise UserError(f"{run_folder} was just taken by another search "
                        f"({current['holder'] if current else 'holder unknown'}); pass another --name.")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            write_lock(location, token, holder)

    threading.Thread(target=beat, name="run-folder-lock", daemon=True).start()
    _held.append(stop)

    def release() -> None:
        stop.set()
        held = read_lock(location)
        if held and held["token"] == token:
            storage.remove(location)

    atexit.register(release)


def is_stale(lock: dict) -> bool:
    if time.time() - lock.get("heartbeat", 0) >= STALE_S:
        return True
    if lock.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lock.get("pid", 0)), 0)  # signal 0: does the process exist?
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def read_lock(location: str) -> dict | None:
    if not storage.exists(location):
        return None
    try:
        return json.loads(storage.read_text(location))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a lock object cut short: no holder to wait for


def write_lock(location: str, token: str, holder: str) -> None:
    storage.write_text(location, json.dumps({"holder": holder, "token": token, "heartbeat": time.time(),
                                             "host": socket.gethostname(), "pid": os.getpid()}))
