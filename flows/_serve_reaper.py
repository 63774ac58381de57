"""The watchdog of ``nowcast serve``: stops its Prefect server and flow runs when it dies.

``nowcast serve`` starts this module as a child (:func:`start_reaper`) with a token in
the environment (:data:`TOKEN_ENV`) that every process it starts inherits: the Prefect
server (and its own children) and the flow-run subprocesses, even those that Prefect puts
in a session of their own. The watchdog asks the kernel for ``SIGTERM`` when its parent
dies (``prctl(PR_SET_DEATHSIG)``, Linux), so a ``kill -9`` of ``serve`` reaches it; it then
sends ``SIGTERM`` to every process of the same user whose environment holds the token,
waits up to :data:`GRACE_SECONDS` and kills what is left. Linux only (``/proc``); elsewhere
nothing is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

TOKEN_ENV: str = "NOWCAST_SERVE_TOKEN"
"""Environment variable naming the ``serve`` whose descendants the watchdog stops."""
GRACE_SECONDS: float = 10.0
"""Seconds between ``SIGTERM`` and ``SIGKILL`` of the processes left behind."""
PR_SET_DEATHSIG: int = 1


def _holders(token: str) -> list[int]:
    """PIDs of this user's processes (but this one) whose environment holds *token*."""
    needle = f"{TOKEN_ENV}={token}".encode()
    uid, me = os.getuid(), os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_descendants(token: str, grace: float = GRACE_SECONDS) -> int:
    """``SIGTERM`` the processes holding *token*, ``SIGKILL`` those alive after *grace* s;
    returns how many were found."""
    pids = _holders(token)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _holders(token):
        time.sleep(0.2)
    for pid in _holders(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


def start_reaper() -> subprocess.Popen | None:
    """Start the watchdog of this process (``serve``); sets :data:`TOKEN_ENV` in
    ``os.environ`` for every child started afterwards. None when not on Linux."""
    if not sys.platform.startswith("linux"):
        return None
    token = os.environ.setdefault(TOKEN_ENV, uuid.uuid4().hex)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # it does not kill itself
    cmd = [sys.executable, "-m", "flows._serve_reaper", str(os.getpid()), token]
    return subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal is for serve, not for this
    )


def _main(parent: int, token: str) -> None:
    import ctypes

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DEATHSIG, signal.SIGTERM, 0, 0, 0)
    while os.getppid() == parent:  # also when the parent died before prctl
        if signal.sigtimedwait([signal.SIGTERM], 5.0) is not None:
            break
    stop_descendants(token)


if __name__ == "__main__":
    _main(int(sys.argv[1]), sys.argv[2])
