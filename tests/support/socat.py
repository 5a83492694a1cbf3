"""A real pseudo-terminal pair made by socat: two serial ports joined by a null-modem cable.

Bytes written to one end come out of the other, at memory speed (a pty ignores the baud rate;
the Modbus simulator keeps RTU wire timing itself). Debian package ``socat``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def socat_or_skip() -> str:
    binary = shutil.which("socat")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("socat is not installed; `make system-deps` installs it as root")
        pytest.skip("socat is not installed (Debian package 'socat')")
    return binary


class PtyPair:
    """``a`` and ``b``: the two ends, as paths a serial client opens."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.a, self.b = str(folder / "tty-a"), str(folder / "tty-b")
        self.proc = subprocess.Popen(
            [binary, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"socat made no pty pair: {self.proc.stderr and self.proc.stderr.read()!r}"
                )
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
