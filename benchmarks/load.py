"""Load and measurement: wrk runs read from a Lua report, server CPU from /proc, core pinning.

``wrk()`` runs wrk with a script from ``benchmarks/lua/`` (joined with ``report.lua``, whose
``done()`` prints one machine-readable line) and, for the server process tree named by
``cpu_of``, the CPU time it used during the run (utime + stime of the process and all its
descendants, reaped ones included, from ``/proc``), divided by the requests served.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- cores ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cores:
    """Which cores the system under test gets, and which the load and the upstream get."""

    server: tuple[int, ...]
    #: for a multi-worker server: as many cores as can be spared (may overlap ``load``)
    server_wide: tuple[int, ...]
    load: tuple[int, ...]
    pinned: bool

    @classmethod
    def plan(cls) -> Cores:
        available = tuple(sorted(os.sched_getaffinity(0)))
        if len(available) < 2 or shutil.which("taskset") is None:
            return cls(available, available, available, pinned=False)
        if len(available) == 2:
            return cls(available[:1], available, available[1:], pinned=True)
        half = max(2, len(available) // 2)
        return cls(available[:1], available[:half], available[half:], pinned=True)

    @property
    def wide_overlaps_load(self) -> bool:
        return bool(set(self.server_wide) & set(self.load))

    def pin(self, cores: Sequence[int]) -> list[str]:
        """The command prefix that runs a process (and its children) on ``cores``."""
        return ["taskset", "-c", ",".join(map(str, cores))] if self.pinned else []

    def describe(self) -> str:
        if not self.pinned:
            return f"not pinned ({len(self.server)} core(s) or no taskset): all share every core"
        text = (
            f"server (1 worker) on core {_list(self.server)}; wrk and the upstream on core(s) "
            f"{_list(self.load)}; 2-worker cases on cores {_list(self.server_wide)}"
        )
        if self.wide_overlaps_load:
            text += " (shared with wrk and the upstream: this machine has no more to spare)"
        return text


def _list(cores: Sequence[int]) -> str:
    return ",".join(map(str, cores))


# --- /proc ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime in ticks) of ``pid``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), sum(int(v) for v in fields[11:15])


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)] = stat[0]
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its descendants (reaped children included)."""
    ticks = 0
    for pid in _tree(root):
        stat = _stat(pid)
        if stat is not None:
            ticks += stat[1]
    return ticks / CLOCK_TICKS


def tree_runqueue_seconds(root: int) -> float:
    """Seconds the main threads of ``root``'s tree sat runnable, waiting for a CPU (another
    process had the core): /proc/PID/schedstat's second field."""
    waited = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            waited += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    return waited / 1e9


def tree_rss_mb(root: int) -> float:
    total = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass
class Case:
    """One measurement of a run, repeated once per round."""

    name: str
    measure: Callable[[], Any]
    #: a short unrecorded run before the first round, if the case has one
    warm_up: Callable[[], object] | None = None


# --- wrk -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One wrk run against one server."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: transport errors and HTTP statuses >= 400 (wrk's count); every connection, when none
    #: got an answer within the run
    errors: int
    #: answers the case's script judged wrong (non-2xx, or not the expected body)
    bad: int
    cpu_us_per_request: float | None
    #: the server's CPU seconds per second of the run: near its cores' count, it was the
    #: limit; well below, it waited (on the disk, or on another process using its cores)
    cpu_busy: float | None
    #: the same for the load side: wrk and the upstream (near their cores' count: the
    #: figure is the load's limit, not the server's)
    load_busy: float | None
    #: the share of the run the server's main threads waited for a CPU they were ready for
    runqueue: float | None
    rss_mb: float | None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_scripts: dict[str, Path] = {}
_script_dir: list[str] = []


def script(name: str) -> Path:
    """``lua/<name>.lua`` with ``lua/report.lua`` appended (wrk takes one script)."""
    if name not in _scripts:
        if not _script_dir:
            _script_dir.append(tempfile.mkdtemp(prefix="gateway-bench-lua-"))
        path = Path(_script_dir[0]) / f"{name}.lua"
        path.write_text((LUA / f"{name}.lua").read_text() + "\n" + (LUA / "report.lua").read_text())
        _scripts[name] = path
    return _scripts[name]


def cleanup_scripts() -> None:
    if _script_dir:
        shutil.rmtree(_script_dir.pop(), ignore_errors=True)
        _scripts.clear()


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    lua: str = "get",
    args: Sequence[str] = (),
    headers: Sequence[str] = (),
    pin: Sequence[str] = (),
    cpu_of: int | None = None,
    load_of: Sequence[int] = (),
) -> Run:
    command = [
        *pin,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script(lua)),
    ]
    for header in headers:
        command += ["-H", header]
    command += [url, "--", *args]
    cpu_before = tree_cpu_seconds(cpu_of) if cpu_of else 0.0
    queued_before = tree_runqueue_seconds(cpu_of) if cpu_of else 0.0
    load_before = _children_cpu() + sum(tree_cpu_seconds(pid) for pid in load_of)
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu_after = tree_cpu_seconds(cpu_of) if cpu_of else 0.0
    queued = tree_runqueue_seconds(cpu_of) - queued_before if cpu_of else 0.0
    load_used = _children_cpu() + sum(tree_cpu_seconds(pid) for pid in load_of) - load_before
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    report: dict[str, int] = json.loads(line[len("BENCH ") :])
    requests = report["requests"]
    seconds = report["duration_us"] / 1e6
    errors = sum(report[k] for k in ("connect", "read", "write", "timeout", "status"))
    if requests == 0:
        errors += connections  # no connection got an answer within the run
    return Run(
        requests=requests,
        seconds=seconds,
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        errors=errors,
        bad=report["bad"],
        cpu_us_per_request=(cpu_after - cpu_before) / requests * 1e6
        if cpu_of and requests
        else None,
        cpu_busy=(cpu_after - cpu_before) / seconds if cpu_of and seconds else None,
        load_busy=load_used / seconds if seconds else None,
        runqueue=queued / seconds if cpu_of and seconds else None,
        rss_mb=tree_rss_mb(cpu_of) if cpu_of else None,
    )


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- small HTTP helpers (setup steps, not measurements) -------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def basic(client_id: str, secret: str) -> str:
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def post_form(url: str, form: dict[str, str], authorization: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": authorization},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def get_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_until_up(url: str, process: subprocess.Popen[Any], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if get_status(url) < 500:
                return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before answering")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url} within {timeout:g} s")
        time.sleep(0.1)


@contextlib.contextmanager
def running(
    command: Sequence[str], log: Path, what: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in ``log``; terminated (then killed) on exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
