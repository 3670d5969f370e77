"""Streaming throughput: a large download and upload through the gateway's public route vs
straight to the upstream, with curl.

Downloads come from nginx (a file it sends with sendfile); uploads go to ``benchmarks/sink.py``,
which reads each body whole before answering, so an early answer cannot cut one short. MB/s
is bytes over curl's total time; the gateway's CPU is per GiB moved.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import Case, tree_cpu_seconds

CASES = ("download-direct", "download-gateway", "upload-direct", "upload-gateway")


@dataclass(frozen=True)
class Transfer:
    mb_per_s: float
    cpu_s_per_gib: float | None


def make_blob(folder: Path, size: int) -> Path:
    path = folder / "blob.bin"
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        left = size
        while left > 0:
            left -= out.write(block[: min(left, len(block))])
    return path


def _curl(url: str, pin: Sequence[str], upload: Path | None) -> tuple[int, float]:
    """(bytes moved, seconds) of one transfer; raises unless it answered 200 in full."""
    what = "%{size_upload}" if upload else "%{size_download}"
    command = [
        *pin,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        f"%{{http_code}} {what} %{{time_total}}",
    ]
    if upload is not None:
        command += ["-H", "Expect:", "-T", str(upload)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    status, moved, seconds = [*out.stdout.split(), "0", "0", "0"][:3]
    if out.returncode != 0 or status != "200":
        raise RuntimeError(f"curl {url}: exit {out.returncode}, HTTP {status}")
    return int(float(moved)), float(seconds)


def cases(
    selected: Sequence[str],
    upstream: str,
    sink: str,
    gateway: str,
    gateway_pid: int,
    blob: Path,
    pin: Sequence[str],
) -> list[Case]:
    """The selected transfers, one ``Case`` each."""
    size = blob.stat().st_size
    urls = {
        "download-direct": (f"{upstream}/public/blob", None, None),
        "download-gateway": (f"{gateway}/public/blob", None, gateway_pid),
        "upload-direct": (f"{sink}/sink/upload", blob, None),
        "upload-gateway": (f"{gateway}/sink/upload", blob, gateway_pid),
    }

    def transfer(url: str, upload: Path | None, pid: int | None) -> Callable[[], Transfer]:
        def measure() -> Transfer:
            cpu = tree_cpu_seconds(pid) if pid else 0.0
            moved, seconds = _curl(url, pin, upload)
            if moved != size:
                raise RuntimeError(f"{url}: moved {moved} bytes of {size}")
            used = tree_cpu_seconds(pid) - cpu if pid else None
            return Transfer(moved / seconds / 1e6, used / (moved / (1 << 30)) if used else None)

        return measure

    return [Case(name, transfer(*urls[name])) for name in CASES if name in selected]


def report(transfers: dict[str, list[Transfer]], size: int) -> dict[str, float]:
    """Print the table; return gateway/direct per direction."""
    if not transfers:
        return {}
    medians = {
        name: statistics.median(t.mb_per_s for t in runs) for name, runs in transfers.items()
    }
    print(f"\nStreaming ({size >> 20} MiB each way, curl; median over the rounds)")
    print(f"  {'case':29} {'MB/s':>9} {'gateway CPU s/GiB':>18}")
    for name, runs in transfers.items():
        cpus = [t.cpu_s_per_gib for t in runs if t.cpu_s_per_gib is not None]
        cpu = f"{statistics.median(cpus):18.2f}" if cpus else ""
        print(f"  {name:29} {medians[name]:9,.0f} {cpu}")
    ratios = {}
    for direction in ("download", "upload"):
        direct, through = medians.get(f"{direction}-direct"), medians.get(f"{direction}-gateway")
        if direct and through is not None:
            ratios[direction] = through / direct
    return ratios
