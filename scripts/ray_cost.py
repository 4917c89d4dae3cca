"""Ray's cost on this machine: start-up time of a local instance and the resident memory of its processes.

    python scripts/ray_cost.py          # one JSON line: init_s, shutdown_s, rss_bytes by process name, load

Starts one local Ray instance (as `run --executor ray` without --ray-address does) and stops it.
"""

from __future__ import annotations

import json
import logging
import os
import time

import psutil


def ray_processes(before: set[int]) -> list[psutil.Process]:
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):  # raylet, gcs_server: may be reparented
        if p.pid not in before and p.info["uids"] and p.info["uids"].real == os.getuid() and \
                any("ray" in part for part in (p.info["cmdline"] or [])):
            found.setdefault(p.pid, p)
    return list(found.values())


def main() -> None:
    import ray

    before = {p.pid for p in psutil.process_iter()}
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    init_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        ray.get(ray.remote(lambda: 1).remote())  # a first task: a worker process started and used
        first_task_s = time.perf_counter() - t1
        time.sleep(1.0)
        rss: dict[str, int] = {}
        for p in ray_processes(before):
            try:
                name = p.name()
                rss[name] = rss.get(name, 0) + p.memory_info().rss
            except psutil.Error:
                pass
    finally:
        t2 = time.perf_counter()
        ray.shutdown()
        shutdown_s = time.perf_counter() - t2
    print(json.dumps({"ray": ray.__version__, "init_s": round(init_s, 2), "first_task_s": round(first_task_s, 2),
                      "shutdown_s": round(shutdown_s, 2), "rss_total_mib": round(sum(rss.values()) / 2**20, 1),
                      "rss_mib": {k: round(v / 2**20, 1) for k, v in sorted(rss.items())},
                      "driver_rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
                      "load_start": load_start, "load_end": os.getloadavg(), "cores": os.cpu_count()}))


if __name__ == "__main__":
    main()
