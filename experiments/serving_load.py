"""Load generation and measurement shared by the serving benchmarks (bench_serving, bench_soak).

- `trained_home`: a REBUY_HOME with champion models (trains a sample store when none is given).
- `running_server`: ``bentoml serve`` of the real service as in production, with API keys made by
  ``rebuy keys create`` (storefront and campaign scopes), and of the trivial
  `experiments.floor_service` next to it.
- `run_wrk`: a closed-loop load of one endpoint with `wrk` (Debian's ``wrk``; C, so the load
  generator takes little of the CPU it shares with the server), returning the latency
  distribution; without ``wrk`` on the PATH, `run_httpx` does the same from Python.
- `CampaignClients`: processes looping campaign requests (``/churn_scores``,
  ``/reminder_timing``), timing every request; they stand for jobs on other machines and run at
  a lower CPU priority (`CLIENT_NICENESS`) than the server.
- `server_rss`: resident memory of every process of a running server.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 10
"""The service's traffic timeout: a request slower than this counts as failed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def trained_home(home: Path | None, *, users: int, seed: int) -> Path:
    """`home` as given, or a new temporary home with the three models trained on a sample store."""
    if home is not None:
        return home
    from features.sample import SampleConfig, generate_store
    from features.window import default_as_of
    from training.pipelines.train_recommender import train_recommender
    from training.pipelines.train_repurchase import train_repurchase
    from training.recommender import load_recommender_config
    from training.registry import RegistrySettings
    from training.repurchase.config import load_repurchase_config

    home = Path(tempfile.mkdtemp(prefix="rebuy-bench-serving-"))
    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    tables = generate_store(SampleConfig(users=users, days=365, seed=seed))
    as_of = default_as_of(tables)
    print(f"training on a {users:,}-user sample store into {home} ...", flush=True)
    train_recommender(
        tables, as_of=as_of, config=load_recommender_config(None), settings=settings, evaluate=False
    )
    train_repurchase(
        tables, as_of=as_of, horizon_days=30, config=load_repurchase_config(None), settings=settings
    )
    return home


def known_users(home: Path) -> list[str]:
    """User ids of the champion's feature snapshot."""
    from training.registry import RegistrySettings
    from training.scoring import load_registered_scorer

    settings = RegistrySettings.from_env({"REBUY_HOME": str(home)})
    return [str(u) for u in load_registered_scorer(settings).score()["user_id"].tolist()]


@dataclass(frozen=True)
class Server:
    url: str
    floor_url: str
    keys: dict[str, str]
    """Scope (``storefront``, ``campaign``) -> API key."""
    pid: int
    """The ``bentoml serve`` process of the real service (its workers are its children)."""


def _create_key(keys_file: Path, name: str, scope: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rebuy", "keys", "create", name, "--scope", scope],
        env={**os.environ, "REBUY_API_KEYS_FILE": str(keys_file)},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout.strip().splitlines()[-1]


def _wait_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


@contextmanager
def running_server(
    home: Path,
    *,
    floor: bool = True,
    ready_timeout: float = 600.0,
    until: Callable[[Server], None] | None = None,
) -> Iterator[Server]:
    """The real service on `home` and (with `floor`) the trivial floor service, each on a free port.

    Keys for the storefront and campaign scopes are created with ``rebuy keys create`` into a
    temporary key file; the server's other limits are its defaults. It is ready when ``/readyz``
    answers within `ready_timeout` seconds, or when `until` (given the server, raising on
    timeout) returns. On the way out the server's workers are stopped too: a worker still
    loading its models outlives its terminated parent.
    """
    tmp = Path(tempfile.mkdtemp(prefix="rebuy-bench-keys-"))
    keys_file = tmp / "api_keys.json"
    keys = {scope: _create_key(keys_file, f"bench-{scope}", scope) for scope in ("storefront", "campaign")}
    env = {**os.environ, "REBUY_HOME": str(home), "REBUY_API_KEYS_FILE": str(keys_file)}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "REBUY_AUTH"):
        env.pop(name, None)
    port, floor_port = free_port(), free_port()
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed below)
    bentoml = [sys.executable, "-m", "bentoml", "serve"]
    server = subprocess.Popen(
        [*bentoml, "serving.service:RebuyService", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    procs = [server]
    if floor:
        procs.append(
            subprocess.Popen(
                [*bentoml, "experiments.floor_service:FloorService", "--port", str(floor_port)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    workers: list[psutil.Process] = []
    try:
        url, floor_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{floor_port}" if floor else ""
        print(f"server log: {tmp / 'server.log'}", flush=True)
        running = Server(url=url, floor_url=floor_url, keys=keys, pid=server.pid)
        if until is None:
            _wait_ready(url, ready_timeout)
        else:
            until(running)
        if floor:
            _wait_ready(floor_url, 120)
        yield running
    finally:
        for proc in procs:
            with suppress(psutil.NoSuchProcess):
                workers += psutil.Process(proc.pid).children(recursive=True)
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        _, alive = psutil.wait_procs(workers, timeout=10)
        for worker in alive:
            worker.kill()
        log.close()


def server_rss(pid: int) -> dict[str, float]:
    """Process label -> resident memory in MB, for the server process and all its children."""
    out: dict[str, float] = {}
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            cmd = proc.cmdline()
            rss = proc.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        if "--service-name" in cmd:
            label = f"worker {cmd[cmd.index('--service-name') + 1]}"
        elif "_bentoml_impl.worker.service" in " ".join(cmd):
            label = "worker RebuyService"
        elif proc.pid == pid:
            label = "bentoml serve (arbiter)"
        else:
            label = "other " + " ".join(cmd[:3])[:40]
        label = f"{label} pid {proc.pid}"
        out[label] = rss
    return out


# --- storefront load ----------------------------------------------------------------------
_LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  if args[2] ~= nil and args[2] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[2] end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end
request = function()
  return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
end
"""


@dataclass(frozen=True)
class LoadResult:
    endpoint: str
    requests: int
    errors: int
    """Non-2xx answers, socket errors and timeouts."""
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def row(self) -> dict[str, float | int | str]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "errors": self.errors,
            "req_per_s": self.req_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


def _ms(text: str) -> float:
    """A wrk duration (``850.00us``, ``12.5ms``, ``1.2s``, ``1.00m``) in ms; NaN when not one."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if found is None:
        return float("nan")
    value, unit = found.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def run_wrk(
    url: str,
    bodies: list[dict],
    *,
    name: str,
    seconds: float,
    connections: int = 8,
    key: str | None = None,
) -> LoadResult:
    """Closed loop on `url` for `seconds` with `connections` connections, bodies drawn at random."""
    if shutil.which("wrk") is None:
        return asyncio.run(
            run_httpx(url, bodies, name=name, seconds=seconds, connections=connections, key=key)
        )
    with tempfile.TemporaryDirectory(prefix="rebuy-wrk-") as tmp:
        script, lines = Path(tmp) / "post.lua", Path(tmp) / "bodies.txt"
        script.write_text(_LUA)
        lines.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
        threads = min(2, connections)
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
             f"--timeout={TIMEOUT_SECONDS}s", "-s", str(script), url, "--", str(lines), key or ""],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    assert total is not None, out
    secs = _ms(f"{total.group(2)}{total.group(3)}") / 1e3
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    assert p50 is not None and p99 is not None, out
    return LoadResult(name, int(total.group(1)), errors, secs, _ms(p50.group(1)), _ms(p99.group(1)))


async def run_httpx(
    url: str, bodies: list[dict], *, name: str, seconds: float, connections: int = 8, key: str | None = None
) -> LoadResult:
    """`run_wrk` in Python (asyncio + httpx keep-alive connections), when wrk is not installed."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    rng = random.Random(0)
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                response = await client.post(url, json=rng.choice(bodies), headers=headers)
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_SECONDS) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        secs = time.perf_counter() - started
    lat = np.asarray(latencies)
    return LoadResult(
        name, len(lat), errors, secs, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    )


# --- campaign load ------------------------------------------------------------------------
CAMPAIGN_PATHS = ("/churn_scores", "/reminder_timing")


@dataclass
class CampaignStats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in CAMPAIGN_PATHS})
    """Path -> seconds of each answered request."""
    errors: list[str] = field(default_factory=list)


CLIENT_NICENESS = 10
"""Campaign clients stand for jobs on other machines: on a shared box they run at low priority,
so that what the benchmark measures is the server's isolation, not the clients' own CPU."""
BODIES_PER_CLIENT = 8


def _campaign_loop(
    url: str, users: list[str], key: str, sizes: tuple[int, int], client: int, stop: object, out: object
) -> None:
    """One campaign client (a process): loop requests until `stop` is set, then put its stats on `out`."""
    os.nice(CLIENT_NICENESS)
    rng = random.Random(client)
    path = CAMPAIGN_PATHS[client % 2]
    stats = CampaignStats()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [  # made once: encoding 10,000 ids per request would compete with the server for CPU
        json.dumps({"user_ids": [rng.choice(users) for _ in range(rng.randint(*sizes))]}).encode()
        for _ in range(BODIES_PER_CLIENT)
    ]
    with httpx.Client(timeout=TIMEOUT_SECONDS + 5, headers=headers) as http:
        i = 0
        while not stop.is_set():  # type: ignore[attr-defined]
            i += 1
            started = time.perf_counter()
            try:
                response = http.post(url + path, content=bodies[i % len(bodies)])
                took = time.perf_counter() - started
                if response.status_code != 200 or took > TIMEOUT_SECONDS:
                    stats.errors.append(
                        f"{path} {response.status_code} after {took:.1f}s {response.text[:80]}"
                    )
                else:
                    stats.latencies[path].append(took)
            except httpx.HTTPError as exc:
                stats.errors.append(f"{path} {type(exc).__name__}")
    out.put(stats)  # type: ignore[attr-defined]


class CampaignClients:
    """`n` processes looping campaign requests of `sizes` (min, max) ids, half on each endpoint.

    Use as a context manager; `stats` holds every client's latencies and errors after exit.
    """

    def __init__(self, url: str, users: list[str], *, key: str, n: int = 4, sizes: tuple[int, int] = (10_000, 10_000)) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._out = ctx.Queue()
        self._procs = [
            ctx.Process(target=_campaign_loop, args=(url, users, key, sizes, i, self._stop, self._out), daemon=True)
            for i in range(n)
        ]  # fmt: skip
        self.stats = CampaignStats()

    def __enter__(self) -> CampaignClients:
        for proc in self._procs:
            proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for _ in self._procs:
            part = self._out.get(timeout=120)
            for path, values in part.latencies.items():
                self.stats.latencies[path].extend(values)
            self.stats.errors.extend(part.errors)
        for proc in self._procs:
            proc.join(timeout=30)

    def rows(self, seconds: float) -> list[dict[str, float | int | str]]:
        rows = []
        for path, values in self.stats.latencies.items():
            lat = np.asarray(values) * 1000 if values else np.asarray([np.nan])
            errors = sum(e.startswith(path) for e in self.stats.errors)
            rows.append(
                {
                    "endpoint": f"{path} (campaign)",
                    "requests": len(values) + errors,
                    "errors": errors,
                    "req_per_s": len(values) / seconds,
                    "p50_ms": float(np.nanpercentile(lat, 50)),
                    "p99_ms": float(np.nanpercentile(lat, 99)),
                }
            )
        return rows
