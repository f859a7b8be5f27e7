"""Warm-cache admission throughput: ``signet serve`` beside a bare FastAPI + uvicorn app.

    .venv/bin/python bench/admission.py [--workers 2] [--duration 10] [--connections 32]

Both servers get the same 3-container Pod AdmissionReview from the same load generator (``wrk``
with a Lua script POSTing the body), in the same run, over plain HTTP on 127.0.0.1, with the
same worker count, uvloop and httptools. The bare app only parses the review (orjson) and
answers allowed; Signet runs its full path: parse, plan, engine (verdict cache hit), response,
metrics and the audit line (to /dev/null). The images are digest references matched by a
``static: pass`` policy, so after the first request every decision is a verdict-cache hit, the
same hot path as a verified signed image. Prints requests/s, p50, p99 and the ratio (goal ≥ 0.5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
DIGESTS = ["sha256:" + c * 64 for c in "abc"]
POLICY = """\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: bench}
spec:
  images: [{glob: "registry.example.com/**"}]
  authorities: [{name: ok, static: {action: pass}}]
"""
BARE_APP = '''\
import orjson
from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/validate")
async def validate(request: Request) -> Response:
    review = orjson.loads(await request.body())
    uid = review["request"]["uid"]
    body = {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": {"uid": uid, "allowed": True}}
    return Response(orjson.dumps(body), media_type="application/json")
'''
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def review() -> bytes:
    containers = [{"name": f"c{i}", "image": f"registry.example.com/team/app{i}@{d}",
                   "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                   "env": [{"name": f"VAR_{j}", "value": "x" * 40} for j in range(8)],
                   "ports": [{"containerPort": 8080 + i}]} for i, d in enumerate(DIGESTS)]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "bench", "namespace": "team-a", "labels": {"app": "bench", "tier": "web"}},
           "spec": {"containers": containers, "serviceAccountName": "default"}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0b7e5c3a-1111-4222-8333-444455556666", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "team-a", "name": "bench",
        "operation": "CREATE", "userInfo": {"username": "dev@example.com", "groups": ["system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False}}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(command: list[str], port: int, cwd: Path) -> Iterator[None]:
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{command[0]} did not start")
        yield
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)


def check(port: int, body: bytes) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/validate", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())["response"]
    if answer.get("allowed") is not True:
        raise SystemExit(f"not allowed: {answer}")


def wrk(port: int, script: Path, seconds: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/validate"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"errors during the run:\n{out}")

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            raise SystemExit(f"no {label}% latency in wrk output:\n{out}")
        return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise SystemExit(f"no Requests/sec in wrk output:\n{out}")
    return {"rps": float(rps[1]), "p50": latency("50"), "p99": latency("99")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    body = review()
    with tempfile.TemporaryDirectory(prefix="signet-bench-") as tmp:
        work = Path(tmp)
        (work / "policies").mkdir()
        (work / "policies" / "bench.yaml").write_text(POLICY)
        (work / "bare.py").write_text(BARE_APP)
        (work / "review.json").write_bytes(body)
        script = work / "post.lua"
        script.write_text(LUA.replace("{body}", str(work / "review.json")))
        results: dict[str, dict[str, float]] = {}
        signet_port, bare_port = free_port(), free_port()
        signet_cmd = [str(VENV / "signet"), "serve", "--host", "127.0.0.1", "--port", str(signet_port),
                      "--policies", str(work / "policies"), "--workers", str(args.workers), "--log-level", "warning"]
        bare_cmd = [str(VENV / "python"), "-m", "uvicorn", "bare:app", "--host", "127.0.0.1", "--port", str(bare_port),
                    "--workers", str(args.workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                    "--log-level", "warning"]
        for name, command, port in (("signet", signet_cmd, signet_port), ("bare", bare_cmd, bare_port)):
            with server(command, port, work):
                for _ in range(4 * args.workers):  # every worker's cache warm
                    check(port, body)
                wrk(port, script, 2, args.connections, args.threads)  # warm-up
                results[name] = wrk(port, script, args.duration, args.connections, args.threads)
    print(f"3-container Pod review ({len(body)} bytes), {args.workers} worker(s), wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s, plain HTTP on 127.0.0.1")
    print(f"{'server':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:<8} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    ratio = results["signet"]["rps"] / results["bare"]["rps"]
    print(f"ratio signet/bare: {ratio:.2f} (goal >= 0.5)")
    return 0 if ratio >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
