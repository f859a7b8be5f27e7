"""The network benchmark's world: real registries behind delay proxies, signed images, ``signet serve``.

Two sites, each a Debian ``docker-registry`` behind a ``DelayProxy``: ``none`` (anonymous) and
``token`` (Docker-Hub-style: the registry answers 401 with a Bearer challenge whose realm is a
token server behind its own delay proxy, so the token dance pays its own round trips). Images
are pushed straight to the registries (no delay) and signed by the test Sigstore kit, as cosign
≤ v2 does (legacy ``.sig``) or as cosign v3 does (bundle referrers). Signet only ever sees the
proxies, through its public interfaces: ``signet serve`` flags and POST /validate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.netproxy import DelayProxy, ProxyThread
from tests.integration.registry import LocalRegistry, TokenIssuer, TokenServer, free_port
from tests.sigstore_kit import SigstoreKit

ROOT = Path(__file__).resolve().parents[1]
SIGNET = ROOT / ".venv" / "bin" / "signet"
SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
TAG = "v1"


@dataclass
class ProxiedTokenServer(TokenServer):
    """A TokenServer whose advertised realm is the proxy in front of it (set once the proxy runs)."""

    public_realm: str = ""

    @property
    def realm(self) -> str:
        return self.public_realm or f"http://127.0.0.1:{self.port}/token"


@dataclass(frozen=True)
class Image:
    repo: str
    digest: str

    def reference(self, host: str, *, pinned: bool) -> str:
        return f"{host}/{self.repo}" + (f"@{self.digest}" if pinned else f":{TAG}")


@dataclass
class Site:
    """One registry as Signet sees it: ``proxy.host`` is the registry's name in image references."""

    auth: str
    registry: LocalRegistry
    proxy: DelayProxy
    token_proxy: DelayProxy | None = None
    token_server: ProxiedTokenServer | None = None
    images: dict[tuple[str, str], list[Image]] = field(default_factory=dict)

    @property
    def proxies(self) -> list[DelayProxy]:
        return [self.proxy] + ([self.token_proxy] if self.token_proxy else [])

    def stop(self) -> None:
        self.registry.stop()
        if self.token_server is not None:
            self.token_server.stop()


def start_site(workdir: Path, thread: ProxyThread, auth: str, **proxy_options: Any) -> Site:
    """A registry (with token auth when ``auth == "token"``) and its proxies on ``thread``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if auth != "token":
        registry = LocalRegistry(workdir)
        return Site(auth, registry, thread.start_proxy(registry.url, **proxy_options))
    token_server = ProxiedTokenServer(TokenIssuer())
    # The token server is http.server: a listen backlog of 5 drops the SYNs of a burst (1 s retries).
    token_proxy = thread.start_proxy(f"http://127.0.0.1:{token_server.port}", upstream_connections=4,
                                     **proxy_options)
    token_server.public_realm = f"{token_proxy.url}/token"
    registry = LocalRegistry(workdir, token=token_server)
    proxy = thread.start_proxy(registry.url, **proxy_options)
    return Site(auth, registry, proxy, token_proxy, token_server)


def push_signed(site: Site, kit: SigstoreKit, repo: str, signature: str) -> Image:
    """A random image tagged ``TAG`` with one keyless signature by the kit's signer, in ``signature`` form."""
    registry = site.registry
    digest = registry.push_random_image(repo, TAG)
    if signature == "bundle":
        bundle = kit.sign_image_bundle(digest, identity=SIGNER, issuer=ISSUER).to_json()
        registry.push_bundle_referrer(repo, digest, bundle)
    else:
        sig = kit.sign_image_legacy(digest, repository=f"{site.proxy.host}/{repo}", identity=SIGNER, issuer=ISSUER)
        registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    return Image(repo, digest)


def policy_yaml(host: str) -> str:
    """Every image of the site must carry the kit signer's keyless signature."""
    return (
        "apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: bench}\nspec:\n"
        f'  images: [{{glob: "{host}/bench/**"}}]\n  authorities:\n    - name: kit-signer\n      keyless:\n'
        f'        identities: [{{issuer: "{ISSUER}", subject: "{SIGNER}"}}]\n'
    )


def review(images: list[str]) -> bytes:
    """A Pod CREATE AdmissionReview with one container per image."""
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench", "namespace": "bench"},
           "spec": {"containers": containers}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "bench", "name": "bench",
        "operation": "CREATE", "userInfo": {"username": "bench@example.com"}, "object": pod, "dryRun": False,
    }}).encode()


@dataclass(frozen=True)
class Admission:
    seconds: float
    cpu_seconds: float
    allowed: bool
    message: str


class SignetProcess:
    """A fresh ``signet serve`` (plain HTTP on 127.0.0.1, one worker) with its own HOME and caches."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str]) -> None:
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        self.workdir = workdir
        self.port = free_port()
        command = [str(SIGNET), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--cluster", "off",
                   "--log-level", "warning", *args]
        environment = {**os.environ, "HOME": str(workdir), "XDG_CACHE_HOME": str(workdir / "cache"),
                       "XDG_DATA_HOME": str(workdir / "data"), **env}
        with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, env=environment)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120, trust_env=False)
        started = time.monotonic()
        while time.monotonic() - started < 30:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return
            time.sleep(0.02)
        self.stop()
        raise SystemExit(f"signet serve did not become ready: {self.stderr()}")

    def stderr(self) -> str:
        return (self.workdir / "stderr").read_text(errors="replace")[-3000:]

    def cpu_seconds(self) -> float:
        """CPU time so far of every thread of the server and its worker processes (ns-precise schedstat)."""
        total = 0
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def admit(self, body: bytes) -> Admission:
        cpu = self.cpu_seconds()
        start = time.perf_counter()
        response = self.client.post("/validate", content=body, headers={"Content-Type": "application/json"})
        seconds = time.perf_counter() - start
        cpu = self.cpu_seconds() - cpu
        if response.status_code != 200:
            raise SystemExit(f"/validate answered {response.status_code}: {response.text[:500]}")
        answer = response.json()["response"]
        return Admission(seconds, cpu, answer.get("allowed") is True, str(answer.get("status", {}).get("message", "")))

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (a supervisor's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The command name may hold spaces and parentheses: the parent pid follows the last ")".
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def as_dict(value: Any) -> Any:
    """Dataclasses (and lists of them) as plain JSON-able values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [as_dict(v) for v in value]
    return value
