"""Where a guarded request spends its time: a sampling profile of create, read and search
through the whole served app (access control, bearer token, encryption, audit).

    .venv/bin/python bench/profile_paths.py [--patients 300] [--requests 400] [--top 15]

Calls go through Starlette's TestClient (no sockets), so the profile shows phivault's own
work, not the HTTP server's. The app runs in other threads than the caller (event loop,
worker threads), which cProfile does not follow; so a sampler thread reads every thread's
stack each millisecond instead. It is a wall-clock profile: a sample is a server thread
that is not parked in a thread pool, queue or selector; a thread blocked inside a C call
(an fsync in COMMIT, a lock wait for the audit group commit) counts for the Python
function making that call. Samples are attributed (1) to each phivault layer on the
stack (inclusive share) and (2) to the innermost phivault function. The process CPU time
next to the wall time tells waiting from computing. Results: stdout and
bench/results/profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.testclient import TestClient

from phivault.access import clients
from phivault.access.runtime import AccessControl
from phivault.api.app import create_app
from phivault.benchmark import workloads as w
from phivault.crypto.kek import KeyFileKeySource, create_key_file
from phivault.demo.clinic import ClinicSpec, generate_clinic
from phivault.service import Context
from phivault.vault import init_data_dir, open_vault

IDLE_FILES = ("/threading.py", "/queue.py", "/selectors.py", "/concurrent/futures/thread.py")


class Sampler(threading.Thread):
    def __init__(self, skip: set[int], interval: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.skip, self.interval = skip, interval
        self.layers: Counter[str] = Counter()
        self.functions: Counter[str] = Counter()
        self.innermost: Counter[str] = Counter()
        self.busy = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        self.skip.add(threading.get_ident())
        while not self._stop_event.is_set():
            for ident, frame in sys._current_frames().items():
                if ident not in self.skip:
                    self._sample(frame)
            time.sleep(self.interval)

    def _sample(self, frame: FrameType) -> None:
        if frame.f_code.co_filename.endswith(IDLE_FILES):
            return
        self.busy += 1
        self.innermost[_package(frame.f_code.co_filename)] += 1
        layers: set[str] = set()
        first: str | None = None
        cursor: FrameType | None = frame
        while cursor is not None:
            name = cursor.f_code.co_filename
            if "/phivault/" in name:
                part = name.split("/phivault/", 1)[1]
                layers.add(part.split("/", 1)[0].removesuffix(".py"))
                if first is None:
                    first = f"{part}:{cursor.f_code.co_name}"
            cursor = cursor.f_back
        self.layers.update(layers)
        if first:
            self.functions[first] += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _package(filename: str) -> str:
    """Where the innermost (running) frame is: a phivault layer or a library."""
    if "/phivault/" in filename:
        return "phivault/" + filename.split("/phivault/", 1)[1].split("/", 1)[0]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    return "python stdlib / interpreter"


def shares(counter: Counter[str], total: int, top: int) -> dict[str, float]:
    return {k: round(v / max(1, total), 3) for k, v in counter.most_common(top)}


def profile_job(
    name: str, make: w.Cycle, callers: list[TestClient], args: argparse.Namespace
) -> dict[str, Any]:
    """`args.requests` requests of `make`, spread over the callers' threads, sampled."""

    def call(k: int, count: int, skip: set[int]) -> None:
        skip.add(threading.get_ident())
        client = callers[k]
        for i in range(k, count, len(callers)):
            method, path, body = make(i)
            reply = client.request(method, path, content=body)
            assert reply.status_code < 300, reply.status_code

    def run(count: int, sampler: Sampler | None) -> float:
        skip = sampler.skip if sampler else set()
        threads = [
            threading.Thread(target=call, args=(k, count, skip)) for k in range(len(callers))
        ]
        started = time.perf_counter()
        if sampler:
            sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sampler:
            sampler.stop()
        return time.perf_counter() - started

    run(20 * len(callers), None)  # warm caches outside the profile
    sampler = Sampler({threading.get_ident()})
    cpu = time.process_time()
    seconds = run(args.requests, sampler)
    cpu = time.process_time() - cpu
    found = {
        "requests": args.requests,
        "callers": len(callers),
        "seconds": round(seconds, 3),
        "process_cpu_seconds": round(cpu, 3),
        "busy_samples": sampler.busy,
        "layer_inclusive": shares(sampler.layers, sampler.busy, 20),
        "running_in": shares(sampler.innermost, sampler.busy, 12),
        "phivault_functions": shares(sampler.functions, sampler.busy, args.top),
    }
    print(f"\n## {name}: {args.requests} requests from {len(callers)} callers in "
          f"{seconds:.2f} s, process CPU {cpu:.2f} s")  # fmt: skip
    for title in ("layer_inclusive", "running_in", "phivault_functions"):
        print(f"\n{title} (share of non-idle thread samples):")
        for key, share in found[title].items():
            print(f"  {share:6.1%}  {key}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--callers", type=int, default=8, help="concurrent client threads")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="phivault-profile-") as tmp:
        key, data = Path(tmp) / "k.key", Path(tmp) / "data"
        create_key_file(key)
        init_data_dir(data, KeyFileKeySource(key))
        vault = open_vault(data, KeyFileKeySource(key))
        try:
            clinic = generate_clinic(ClinicSpec(patients=args.patients, seed=w.CLINIC_SEED))
            for _ in vault.service.import_resources(Context(actor="profile"), clinic):
                pass
            access = AccessControl.for_service(vault.service, vault.keyring)
            row = clients.register(access.store, "profile", clients.SCRIPT, "system/*.cruds")
            token, _ = access.system_token(row.client_id, "system/*.cruds", 900)
            app = create_app(vault.service, vault.settings, access)
            facts = w.load_facts(args.patients)
            jobs = {
                "create": w.create(args.requests),
                "read": w.read(facts),
                "Observation by patient+code+date": w.search_observations(facts),
            }
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
            }
            callers = [TestClient(app, headers=headers) for _ in range(args.callers)]
            for caller in callers:
                caller.__enter__()
            try:
                for name, make in jobs.items():
                    out[name] = profile_job(name, make, callers, args)
            finally:
                for caller in callers:
                    caller.__exit__(None, None, None)
        finally:
            vault.close()
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "profile.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
