"""Benchmark: what a sharded instance's coordination costs on the broker (docs/scale-out.md#sharded-campus).

Three ``monitord run --shard K`` processes of a small campus (a feeder on shard 1, lifts it feeds on
shards 2 and elsewhere, no devices answering: every fact says offline) on a real Mosquitto. Per
instance: its established TCP connections to the broker (``ss``), and the CPU of its paho threads
(every paho network thread of the process: the campus has no MQTT devices, so these are the fleet's)
per second, over ``--seconds`` of steady running and again while shard 1 is killed (-9) and started
again every 5 s (its will, the others dropping its facts, its return and its facts said again).
``--tree DIR`` runs monitord from another source tree (``git archive <commit> | tar -x -C DIR``), so
the figures before and after a change come from one run on one machine. Never part of the tests.

    PYTHONPATH=. .venv/bin/python bench/shard_link.py [--seconds 20] [--tree /tmp/before]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.campus import lifts, meters, site
from tests.support.mosquitto import Mosquitto, mosquitto_binary

SHARDS = 3


def start(folder: Path, config: Path, k: int, tree: Path | None) -> subprocess.Popen[bytes]:
    home = folder / f"shard{k}"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "SHARD_DATA": str(home)}
    env["PYTHONPATH"] = str(tree or Path(__file__).resolve().parents[1])  # cwd is the shard's folder
    probe = [__file__, "--probe", str(home / "paho-cpu")]
    args = ["run", str(config), "--shard", str(k), "--instance", f"campus-{k}", "--metrics-port", "0"]
    with (home / "run.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *probe, *args], cwd=home, stdout=out, stderr=subprocess.STDOUT, env=env
        )


def connections(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` to the broker's port."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True
    ).stdout
    return sum(f"pid={pid}," in line for line in out.splitlines())


def paho_cpu(home: Path) -> float:
    """CPU seconds of the process's paho network threads so far, as its probe last wrote them."""
    try:
        return float((home / "paho-cpu").read_text() or "nan")
    except (OSError, ValueError):
        return float("nan")


def probe(out: Path) -> None:
    """In the monitord process (``--probe``): every 0.2 s, write the CPU its paho threads have used
    (per-thread CPU clocks: nanoseconds, where /proc's clock ticks are 10 ms), then run monitord."""

    def write() -> None:
        while True:
            spent = 0.0
            for t in threading.enumerate():
                if t.name.startswith("paho-mqtt") and t.ident is not None:
                    with contextlib.suppress(OSError):
                        spent += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            out.write_text(f"{spent:.9f}")
            time.sleep(0.2)

    threading.Thread(target=write, daemon=True).start()
    runpy.run_module("monitord", run_name="__main__")


def wait_connected(procs: dict[int, subprocess.Popen[bytes]], port: int, want: int, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(connections(p.pid, port) >= want for p in procs.values()):
            return
        time.sleep(0.1)
    raise SystemExit(f"not every shard connected to the broker within {limit} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tree", type=Path, default=None, help="run monitord from this source tree")
    args = parser.parse_args()
    binary = mosquitto_binary()
    assert binary, "mosquitto is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(binary, folder)
        broker.start()
        text = site(meters(["F"], port=1) + lifts([f"L{i}" for i in range(8)], "F", 2), pin="F: 1, L0: 2")
        text = text.replace("mqtt://127.0.0.1:1'", f"mqtt://127.0.0.1:{broker.port}'")
        text += "store: {kind: sqlite, path: '${SHARD_DATA}/store.db'}\napi: {host: 127.0.0.1, port: 0}\n"
        config = folder / "site.yaml"
        config.write_text(text)
        procs = {k: start(folder, config, k, args.tree) for k in range(SHARDS)}
        try:
            time.sleep(3)  # start-up: imports, first evaluations, every fact said once
            wait_connected(procs, broker.port, 1, 30)
            time.sleep(2)
            conns = {k: connections(p.pid, broker.port) for k, p in procs.items()}
            print(
                "broker connections per instance: " + ", ".join(f"shard {k}: {n}" for k, n in conns.items())
            )
            before = {k: paho_cpu(folder / f"shard{k}") for k, p in procs.items()}
            time.sleep(args.seconds)
            steady = {
                k: (paho_cpu(folder / f"shard{k}") - before[k]) / args.seconds for k, p in procs.items()
            }
            print(
                f"paho CPU, steady ({args.seconds:.0f} s): "
                + ", ".join(f"shard {k}: {1e3 * v:.2f} CPU-ms/s" for k, v in steady.items())
            )
            watched = {k: p for k, p in procs.items() if k != 1}
            before = {k: paho_cpu(folder / f"shard{k}") for k, p in watched.items()}
            began, restarts = time.monotonic(), 0
            while time.monotonic() - began < args.seconds:
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait()
                procs[1] = start(folder, config, 1, args.tree)
                restarts += 1
                time.sleep(5)
            elapsed = time.monotonic() - began
            churn = {k: (paho_cpu(folder / f"shard{k}") - before[k]) / elapsed for k, p in watched.items()}
            print(
                f"paho CPU, shard 1 killed and restarted {restarts}x in {elapsed:.0f} s: "
                + ", ".join(f"shard {k}: {1e3 * v:.2f} CPU-ms/s" for k, v in churn.items())
            )
            logs = " ".join((folder / f"shard{k}" / "run.log").read_text(errors="replace") for k in range(3))
            print("shards gone / back in the logs:", len(re.findall(r"shard \d+ is gone", logs)))
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            broker.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        target = Path(sys.argv[2])
        sys.argv = ["monitord", *sys.argv[3:]]
        probe(target)
    else:
        main()
