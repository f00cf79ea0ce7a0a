"""What the benchmarks share: the sandbox in its own process, a tuned config, and a child
process measured for wall time and peak memory.

The sandbox runs as ``python -m magsync sandbox serve`` in a separate process so that its
CPU and memory are not counted against magsync's, exactly as a real shop's servers are not.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import requests
import yaml

READY_PREFIX = "sandbox ready:"
READY_TIMEOUT = 300.0  # generating a very large shop takes a while; this only guards a hang
STOP_TIMEOUT = 30.0


class BenchError(RuntimeError):
    """The benchmark could not run (the sandbox did not start, a child failed)."""


_S = TypeVar("_S", bound="_Started")


class _Started:
    """A context manager over ``start()`` and ``stop()``: stopped also when starting
    fails half-way."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxProcess(_Started):
    """``magsync sandbox serve`` in a child process; a context manager that stops it."""

    def __init__(self, *, customers: int, subscribers: int, config_path: Path,
                 latency_ms: float = 0.0, seed: int = 0, log_bodies: bool = False) -> None:
        self.config_path = config_path
        self.argv = [sys.executable, "-m", "magsync", "-q", "sandbox", "serve",
                     "--customers", str(customers), "--subscribers", str(subscribers),
                     "--seed", str(seed), "--write-config", str(config_path)]
        self.env = {**os.environ, "MAGSYNC_SANDBOX_LATENCY_MS": str(latency_ms),
                    "MAGSYNC_SANDBOX_LOG_BODIES": "1" if log_bodies else "0"}
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self.magento_url = ""
        self.emarsys_url = ""

    def start(self) -> SandboxProcess:
        """Spawn the sandbox and wait for its ready line."""
        # closed in stop(): it must outlive this method, as long as the sandbox runs
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, env=self.env)
        guard = threading.Timer(READY_TIMEOUT, self.proc.kill)
        guard.start()
        try:
            line = self._read_ready_line()
        finally:
            guard.cancel()
        # "sandbox ready: Magento http://h:p, Emarsys http://h:q/api/v2"
        magento, emarsys = line[len(READY_PREFIX):].split(",", 1)
        self.magento_url = magento.strip().removeprefix("Magento ").strip()
        self.emarsys_url = emarsys.strip().removeprefix("Emarsys ").strip().rsplit("/api/", 1)[0]
        # keep draining stdout so the sandbox never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _read_ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(READY_PREFIX):
                return line.strip()
        self.proc.wait()
        raise BenchError(f"the sandbox exited {self.proc.returncode} before it was ready: "
                         f"{self.stderr_text().strip()}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def base_url(self, side: str) -> str:
        return self.magento_url if side == "magento" else self.emarsys_url

    def control(self, side: str, method: str, path: str, body: Any = None) -> Any:
        """Call the control plane (``/_sandbox/...``) of one side; returns the JSON."""
        resp = requests.request(method, f"{self.base_url(side)}/_sandbox/{path}", json=body,
                                timeout=60)
        resp.raise_for_status()
        return resp.json()

    def stats(self, side: str) -> dict[str, Any]:
        """Request counts of one side (``GET /_sandbox/stats``)."""
        data: dict[str, Any] = self.control(side, "GET", "stats")
        return data

    def stop(self) -> None:
        """SIGINT (a clean shutdown), then SIGKILL if it does not stop in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None



SIDES = ("magento", "emarsys")


class Sandboxes(_Started):
    """The two simulators for a benchmark, each in a ``sandbox serve`` process of its own
    (a shop's Magento and Emarsys are separate servers: one's work never waits on the
    other's), or both in one process with ``one_process``. A context manager; the config
    for both is written to ``config_path`` once they are ready.

    The Emarsys process is a ``sandbox serve`` with an empty shop: its Emarsys account is
    set up (key fields created) exactly as in the shop's own process.
    """

    def __init__(self, *, customers: int, subscribers: int, config_path: Path,
                 latency_ms: float = 0.0, seed: int = 0, one_process: bool = False) -> None:
        self.config_path = config_path
        stem = config_path.with_suffix("")
        shop = SandboxProcess(customers=customers, subscribers=subscribers,
                              config_path=Path(f"{stem}-magento.yaml"),
                              latency_ms=latency_ms, seed=seed)
        account = shop if one_process else SandboxProcess(
            customers=0, subscribers=0, config_path=Path(f"{stem}-emarsys.yaml"),
            latency_ms=latency_ms, seed=seed)
        self.procs = {"magento": shop, "emarsys": account}

    def start(self) -> Sandboxes:
        """Start each process (once) and write the combined config."""
        for proc in {id(p): p for p in self.procs.values()}.values():
            proc.start()
        cfg: dict[str, Any] = yaml.safe_load(self.procs["magento"].config_path.read_text())
        emarsys = yaml.safe_load(self.procs["emarsys"].config_path.read_text())
        cfg["emarsys"] = emarsys["emarsys"]
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.config_path.chmod(0o600)  # it holds the sandbox's secrets
        return self

    def base_url(self, side: str) -> str:
        return self.procs[side].base_url(side)

    def control(self, side: str, method: str, path: str, body: Any = None) -> Any:
        """Call the control plane (``/_sandbox/...``) of one side; returns the JSON."""
        return self.procs[side].control(side, method, path, body)

    def stats(self, side: str) -> dict[str, Any]:
        """Request counts of one side (``GET /_sandbox/stats``)."""
        return self.procs[side].stats(side)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def tune_config(source: Path, target: Path, state_path: Path,
                overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Copy the sandbox's config with ``overrides`` merged per section; returns it."""
    cfg: dict[str, Any] = yaml.safe_load(source.read_text())
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    cfg["state"] = {"path": str(state_path)}
    target.write_text(yaml.safe_dump(cfg, sort_keys=False))
    target.chmod(0o600)  # it holds the sandbox's secrets
    return cfg


@dataclass
class ChildResult:
    """How one measured child process ended."""

    exit_code: int
    wall_seconds: float
    peak_rss_kb: int  # the child's own peak (VmHWM), not wait4's ru_maxrss
    cpu_seconds: float  # user + system time of the child alone
    stdout: str
    stderr: str
    started_at: float = 0.0  # time.time() at the child's start and after it was reaped,
    ended_at: float = 0.0  # on the clock the sandbox stamps its request log with
    system_seconds: float = 0.0  # the kernel's part of cpu_seconds


# ``python -m MODULE ...`` run so that the child prints its own peak RSS at exit. wait4's
# ru_maxrss would not do: it keeps the RSS the parent had at fork across exec, so a
# benchmark that holds a large sandbox shop or generated rows would report its own size.
PEAK_MARK = "magsync-bench-VmHWM-kB"
_WITH_PEAK_RSS = f"""
import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("{PEAK_MARK}", line.split()[1], file=sys.stderr)
atexit.register(_peak)
module = sys.argv.pop(1)
sys.argv[0] = module
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def own_peak_argv(argv: list[str]) -> list[str]:
    """``[python, -m, MODULE, args...]`` as a child that reports its own VmHWM."""
    if len(argv) >= 3 and argv[1] == "-m":
        return [argv[0], "-c", _WITH_PEAK_RSS, argv[2], *argv[3:]]
    return argv


def split_peak(stderr: str) -> tuple[int | None, str]:
    """The peak RSS (kB) a wrapped child printed, and its stderr without that line."""
    peak = None
    kept = []
    for line in stderr.splitlines(keepends=True):
        if line.startswith(PEAK_MARK + " "):
            peak = int(line.split()[1])
        else:
            kept.append(line)
    return peak, "".join(kept)


def run_measured(argv: list[str]) -> ChildResult:
    """Run ``argv``; wall time, CPU (``wait4`` rusage of that one child) and its own peak
    RSS. A ``python -m MODULE`` child reports its VmHWM itself (see ``own_peak_argv``);
    for any other the figure falls back to ru_maxrss."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started_at = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(own_peak_argv(argv), stdout=out, stderr=err, text=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
        ended_at = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        peak, stderr = split_peak(err.read())
        # ru_maxrss is in kilobytes on Linux
        return ChildResult(proc.returncode, wall, peak or int(usage.ru_maxrss),
                           usage.ru_utime + usage.ru_stime, out.read(), stderr,
                           started_at, ended_at, usage.ru_stime)


def run_magsync(config: Path, command: str, ok: tuple[int, ...] = (0,)) -> ChildResult:
    """``magsync -q COMMAND`` as a measured child; ``BenchError`` on another exit code."""
    child = run_measured([sys.executable, "-m", "magsync", "--config", str(config), "-q",
                          command])
    if child.exit_code not in ok:
        raise BenchError(f"{command} exited {child.exit_code}: {child.stderr.strip()}")
    return child


def magsync_json(config: Path, *args: str) -> Any:
    """Run a magsync command that prints JSON (e.g. ``status --json``) and parse it."""
    result = subprocess.run([sys.executable, "-m", "magsync", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BenchError(f"magsync {' '.join(args)} exited {result.returncode}: "
                         f"{result.stderr.strip()}")
    return json.loads(result.stdout)


def route_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Requests per route between two ``stats()`` snapshots, busiest first, zeros left out."""
    old = before.get("by_route", {})
    delta = {route: n - old.get(route, 0) for route, n in after.get("by_route", {}).items()}
    return {route: n for route, n in sorted(delta.items(), key=lambda kv: -kv[1]) if n}


def measurements(args: argparse.Namespace, cfg: dict[str, Any], child: ChildResult,
                 sent: int, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The figures both benchmarks report for their measured run: time, CPU, memory,
    requests per side (``after`` minus ``before`` stats), the settings, and with a
    latency the bound."""
    requests = {side: after[side]["total"] - before[side]["total"] for side in after}
    wall = child.wall_seconds
    figures: dict[str, Any] = {
        "contacts_sent": sent,
        "wall_seconds": round(wall, 3), "magsync_cpu_seconds": round(child.cpu_seconds, 3),
        "magsync_system_seconds": round(child.system_seconds, 3),
        "contacts_per_second": round(sent / wall, 1) if wall > 0 else None,
        "requests": requests,
        "requests_by_route": {side: route_delta(before[side], after[side])
                              for side in after},
        "peak_rss_kb": child.peak_rss_kb, "peak_rss_mb": round(child.peak_rss_kb / 1024, 1),
        "latency_ms": args.latency, "page_size": cfg["magento"]["page_size"],
        "magento_concurrency": cfg["magento"]["concurrency"],
        "emarsys_concurrency": cfg["emarsys"]["concurrency"],
        "emarsys_batch_size": cfg["emarsys"]["batch_size"],
    }
    if args.latency > 0:
        figures.update(latency_bound(args.latency, requests, figures, wall))
    return figures


def latency_bound(latency_ms: float, requests: dict[str, int], figures: dict[str, Any],
                  wall: float) -> dict[str, Any]:
    """The wall time the latency alone forces, per side, and how close the run came."""
    seconds = latency_ms / 1000.0
    magento = requests["magento"] * seconds / figures["magento_concurrency"]
    emarsys = requests["emarsys"] * seconds / figures["emarsys_concurrency"]
    bound = max(magento, emarsys)
    return {"bound_magento_seconds": round(magento, 3),
            "bound_emarsys_seconds": round(emarsys, 3), "bound_seconds": round(bound, 3),
            "wall_over_bound": round(wall / bound, 2) if bound > 0 else None}


def latency_timeline(latency_ms: float, child: ChildResult,
                     log: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Where a run's wall time went against the latency bound, from the sandbox's request
    logs of that run (``GET /_sandbox/log``; each entry is stamped when its reply was
    ready, so a request left about ``latency`` before its stamp):

    - ``startup_seconds``: from the child's start to its first Magento request;
    - ``magento_span_seconds``: from the first Magento request to its last reply, against
      ``bound_magento_seconds`` (the two differ by what each page costs besides the
      latency: the server building it, the client reading it and sending the next);
    - ``tail_seconds``: from the last Magento reply to the child's exit (the last pages'
      lookups and upserts, the list calls at the end, the state's last commit).
    """
    seconds = latency_ms / 1000.0
    magento = sorted(e["at"] for e in log.get("magento", []))
    if not magento:
        return {}
    first = magento[0] - seconds
    return {
        "startup_seconds": round(first - child.started_at, 3),
        "magento_span_seconds": round(magento[-1] - first, 3),
        "tail_seconds": round(child.ended_at - magento[-1], 3),
    }


def render_measurements(f: dict[str, Any]) -> list[str]:
    """The lines both benchmarks print after their headline: time, memory, requests."""
    lines = [
        f"  wall {f['wall_seconds']:.2f} s, {f['contacts_per_second']} contacts/s "
        f"(magsync CPU {f['magsync_cpu_seconds']:.2f} s, of which the kernel's "
        f"{f['magsync_system_seconds']:.2f} s)",
        f"  peak RSS of magsync: {f['peak_rss_mb']} MB",
        f"  requests: Magento {f['requests']['magento']}, Emarsys {f['requests']['emarsys']}"
        f" (page_size {f['page_size']}, concurrency {f['magento_concurrency']}/"
        f"{f['emarsys_concurrency']}, batch_size {f['emarsys_batch_size']})",
    ]
    for side, routes in f["requests_by_route"].items():
        for route, n in routes.items():
            lines.append(f"    {side:8} {n:7}  {route}")
    if "bound_seconds" in f:
        lines.append(
            f"  latency {f['latency_ms']:g} ms: bound {f['bound_seconds']:.2f} s (Magento "
            f"{f['bound_magento_seconds']:.2f} s, Emarsys {f['bound_emarsys_seconds']:.2f} s)"
            f", wall/bound {f['wall_over_bound']}")
    if "startup_seconds" in f:
        lines.append(
            f"    start-up to the first Magento request {f['startup_seconds']:.2f} s, Magento's "
            f"first request to its last reply {f['magento_span_seconds']:.2f} s, "
            f"from there to the exit {f['tail_seconds']:.2f} s")
    return lines


def compile_magsync() -> None:
    """Byte-compile the magsync package the children import, as installing it does (pip
    compiles at install time): a checkout run with ``PYTHONDONTWRITEBYTECODE`` would
    otherwise compile every module in every child, which no deployed magsync pays."""
    import compileall

    import magsync

    compileall.compile_dir(str(Path(magsync.__file__).parent), quiet=1)


def run_json(argv: list[str]) -> Any:
    """Run a benchmark (or the floor) that prints JSON and parse what it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[1:3])} exited {done.returncode}: "
                         f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def spread(values: list[float], digits: int | None = 3) -> dict[str, float]:
    """min / median / max of the runs (rounded to ``digits``, None: as they are)."""
    out = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return out if digits is None else {k: round(v, digits) for k, v in out.items()}


def bench_main(script: str, args: argparse.Namespace, run_benchmark: Any,
               render: Any) -> int:
    """A benchmark's ``main``: run it in a temporary directory and print its figures."""
    return run_main(script, args.json, lambda workdir: run_benchmark(args, workdir), render)


def run_main(script: str, as_json: bool, run: Any, render: Any) -> int:
    """Run a benchmark in a temporary directory and print its figures (or JSON);
    1 when it could not run."""
    compile_magsync()
    with tempfile.TemporaryDirectory(prefix="magsync-bench-") as tmp:
        try:
            figures = run(Path(tmp))
        except BenchError as exc:
            print(f"{script}: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(figures, indent=2) if as_json else "\n".join(render(figures)))
    return 0


def add_shop_arguments(p: argparse.ArgumentParser) -> None:
    """The options both benchmarks take: shop size, concurrencies, page size, output."""
    p.add_argument("--customers", type=int, default=100000, help="customers (default 100000)")
    p.add_argument("--subscribers", type=int, default=None,
                   help="newsletter subscribers (default customers/5)")
    p.add_argument("--magento-concurrency", type=int, default=None,
                   help="magento.concurrency (default: the sandbox config's)")
    p.add_argument("--emarsys-concurrency", type=int, default=None,
                   help="emarsys.concurrency (default: the sandbox config's)")
    p.add_argument("--page-size", type=int, default=300, help="magento.page_size (default 300)")
    p.add_argument("--one-sandbox-process", action="store_true",
                   help="run both simulators in one process (default: one process each, "
                        "as Magento and Emarsys are separate servers)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
