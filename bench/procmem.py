"""A process's memory as the kernel accounts it, read from /proc/PID/smaps_rollup: the one reader the benches share.

RSS counts every page a process maps in full, shared ones (a memory-mapped model file, Ray's object store) in each
process that maps them; PSS splits each shared page among those processes, so a sum of PSS over processes counts it
once. Reading smaps_rollup walks the process's page tables under its memory-map lock: a process that faults a page
meanwhile waits, so a latency bench must not read it while it measures (bench/scale.py).
"""
from __future__ import annotations

from pathlib import Path

FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File")


def rollup(pid: int) -> dict[str, float]:
    """FIELDS of /proc/PID/smaps_rollup in GiB; {} when the process is gone or not ours to read."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[name] = int(rest.split()[0]) / 2**20
    return out
