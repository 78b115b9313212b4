"""Memory per service worker: `omnidecide serve --workers 2` on a stored model store, after a fixed set of requests.

    flock /tmp/bigmem.lock nice -n 15 .venv/bin/python bench/worker_memory.py --store STORE --world WORLD [--requests 2000]

Why a separate bench: bench/scale.py's request-http stage also reports the workers' PSS, but only beside a load test
of a few minutes whose latency figures need a quiet machine; memory does not. Here the server answers `--requests`
`/recommend` calls (random known customers, k=20, two in flight, so both workers serve) and then each worker's
/proc/PID/smaps_rollup is read: RSS (shared pages counted in full in each process), PSS (each shared page split
among the processes that map it: what a worker adds to the machine), and PSS split into anonymous (private copies)
and file-backed, the latter by kind (the version's mapped arrays, its faiss index, code and libraries). How many
mapped pages a worker holds depends on the page cache too (the kernel maps the cached neighbours of a touched page),
so compare runs made in the same state (e.g. each just after the mapped files were written). No timing is reported.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from procmem import FIELDS, rollup  # noqa: E402
from recommend_throughput import _free_port, workers  # noqa: E402

def by_file(pid: int) -> dict[str, float]:
    """PSS (GiB) of the file-backed mappings of /proc/PID/smaps, by kind: the version's mapped arrays (store/mapped.py),
    its faiss index (items.faiss), other files (code, libraries)."""
    out = dict.fromkeys(("mapped arrays", "items.faiss", "other files"), 0.0)
    kind = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping's header line
            path = head[5] if len(head) > 5 else ""
            kind = None if not path.startswith("/") else ("mapped arrays" if "/mapped/" in path else
                                                           "items.faiss" if path.endswith(".faiss") else "other files")
        elif kind and line.startswith("Pss:"):
            out[kind] += int(head[1]) / 2**20
    return out


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="the model store (BENTOML_HOME)")
    ap.add_argument("--world", type=Path, required=True, help="the world it was trained on (users.parquet or .csv)")
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args(argv)
    import httpx

    from omnidecide.serving.ready import wait_ready

    omni = [str(Path(sys.executable).with_name("omnidecide"))]
    env = {**os.environ, "BENTOML_HOME": str(args.store)}
    env.pop("OMNIDECIDE_DATABASE_URL", None)  # the store's own embedded database
    key = subprocess.run(omni + ["keys", "create", "--scope", "read", "--name", f"bench-mem-{os.getpid()}"], check=True,
                         env=env, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    port = _free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="worker-memory-", suffix=".log", delete=False)
    server = subprocess.Popen(omni + ["serve", "--port", str(port), "--workers", "2"], env=env, cwd=ROOT,
                              start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    users = (pd.read_parquet(args.world / "users.parquet", columns=["user_id"]) if (args.world / "users.parquet").exists()
             else pd.read_csv(args.world / "users.csv", dtype=str, usecols=["user_id"]))["user_id"].astype(str).tolist()
    rng = random.Random(0)
    bodies = [{"user_id": rng.choice(users), "k": 20} for _ in range(args.requests)]
    try:
        if wait_ready(url, 900, server) is None:
            raise SystemExit(f"the server did not become ready (its output: {log.name})")
        headers = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, timeout=120, headers=headers) as c1, \
                httpx.Client(base_url=url, timeout=120, headers=headers) as c2, ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(lambda ib: (c1 if ib[0] % 2 else c2).post("/recommend", json=ib[1]).status_code,
                                  enumerate(bodies)))
        procs = workers(server.pid)
        mem = sorted(({**rollup(p.pid), **by_file(p.pid)} for p in procs), key=lambda m: m["Pss"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    print(f"Run: `{' '.join(['.venv/bin/python', 'bench/worker_memory.py'] + argv)}` — "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}; "
          f"{len(codes)} /recommend calls, {sum(c != 200 for c in codes)} not 200.\n")
    cols = [*FIELDS, "mapped arrays", "items.faiss", "other files"]
    print("| worker | " + " | ".join(f"{f} GiB" for f in cols) + " |\n|---|" + "---:|" * len(cols))
    for n, m in enumerate(mem, 1):
        print(f"| {n} | " + " | ".join(f"{m[f]:.3f}" for f in cols) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
