"""``signet serve`` flags → ServerConfig, and the packaged default policies."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webhook.cli import build_parser
from webhook.config import ServerConfig, from_args
from webhook.errors import InputError
from webhook.policy.models import NoMatchPolicy
from webhook.server.setup import build_trust, load_policies

PROJECT = Path(__file__).resolve().parents[3]
CHART_ARGS = ["serve", "--host", "0.0.0.0", "--port", "8443", "--tls-cert", "/etc/signet/tls/tls.crt",
              "--tls-key", "/etc/signet/tls/tls.key", "--policies", "/etc/signet/policies",
              "--no-match-policy", "warn", "--on-error", "allow", "--deadline", "8",
              "--tuf-mirror", "https://tuf.example", "--tuf-root", "/etc/signet/trust-root/root.json",
              "--allow-http-registry", "--prewarm", "--pull-secrets"]


def parse(*argv: str, env: dict[str, str] | None = None) -> ServerConfig:
    parser, _commands = build_parser()
    args: argparse.Namespace = parser.parse_args(list(argv))
    return from_args(args, env or {})


def test_defaults_are_local_and_embedded() -> None:
    config = parse("serve")
    assert (config.host, config.port, config.tls) == ("127.0.0.1", 8443, False)
    assert config.policies_dir is None and config.trust_source == "tuf" and config.tuf_mirror is None
    assert config.no_match_policy is NoMatchPolicy.DENY and config.on_error == "deny" and config.deadline == 8.0


IN_A_POD = {"KUBERNETES_SERVICE_HOST": "kubernetes.default.svc"}


def test_every_flag_the_chart_passes_is_accepted() -> None:
    config = parse(*CHART_ARGS, env=IN_A_POD)
    assert config.host == "0.0.0.0" and config.tls_cert == Path("/etc/signet/tls/tls.crt")
    assert config.policies_dir == Path("/etc/signet/policies") and config.no_match_policy is NoMatchPolicy.WARN
    assert config.on_error == "allow" and config.tuf_mirror == "https://tuf.example"
    assert config.allow_http_registry and config.prewarm and config.pull_secrets and config.cluster


def test_cluster_is_on_in_a_pod_or_with_a_kubeconfig_and_needed_by_pull_secrets() -> None:
    assert not parse("serve").cluster
    assert parse("serve", env=IN_A_POD).cluster
    assert parse("serve", "--kubeconfig", "/k").cluster
    assert not parse("serve", "--cluster", "off", env=IN_A_POD).cluster
    with pytest.raises(InputError, match=r"--pull-secrets and --prewarm need the cluster"):
        parse("serve", "--pull-secrets")


def test_chart_template_flags_are_known_to_serve() -> None:
    template = (PROJECT / "charts" / "signet" / "templates" / "deployment.yaml").read_text()
    _parser, commands = build_parser()
    serve_parser = commands["serve"][0]
    known = {flag for action in serve_parser._actions for flag in action.option_strings}
    used = {line.strip().removeprefix("- ") for line in template.splitlines() if line.strip().startswith("- --")}
    assert used and used <= known, used - known


def test_trusted_root_and_env_select_the_source() -> None:
    assert parse("serve", "--trusted-root", "/x.json").trust_source == "file"
    config = parse("serve", env={"SIGSTORE_REKOR_PUBLIC_KEY": "/k.pem", "HOME": "/root"})
    assert config.trust_source == "env" and dict(config.sigstore_env) == {"SIGSTORE_REKOR_PUBLIC_KEY": "/k.pem"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--tls-cert", "c.pem"], r"--tls-cert and --tls-key go together"),
    (["--trusted-root", "a", "--tuf-mirror", "https://m"], r"excludes"),
    (["--tuf-root", "r.json"], r"--tuf-root needs --tuf-mirror"),
    (["--deadline", "0"], r"--deadline must be a positive"),
    (["--port", "70000"], r"not a TCP port"),
    (["--registry-mirror", "nope"], r"HOST=URL"),
    (["--workers", "0"], r"--workers"),
    (["--max-images", "0"], r"--max-images must be at least 1"),
    (["--max-connections", "2"], r"--max-connections must be at least 8"),
    (["--read-timeout", "0"], r"--read-timeout must be a positive"),
    (["--shutdown-grace", "-1"], r"--shutdown-grace must be a positive"),
    (["--keep-alive-timeout", "0"], r"--keep-alive-timeout must be at least 1"),
    (["--client-ca", "ca.pem"], r"--client-ca needs --tls-cert"),
    (["--metrics-port", "8443"], r"--metrics-port 8443 must be a TCP port other than --port"),
    (["--metrics-port", "0"], r"--metrics-port 0 must be a TCP port"),
])
def test_bad_flags_are_input_errors(argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse("serve", *argv)


def test_bounds_default_and_flags() -> None:
    config = parse("serve")
    assert (config.max_images, config.read_timeout, config.max_connections) == (256, 10.0, 1000)
    assert (config.keep_alive_timeout, config.shutdown_grace, config.client_ca, config.metrics_port) == (5, 10.0, None,
                                                                                                          None)
    config = parse("serve", "--max-images", "32", "--read-timeout", "2.5", "--max-connections", "64",
                   "--keep-alive-timeout", "30", "--shutdown-grace", "20", "--tls-cert", "c", "--tls-key", "k",
                   "--client-ca", "/etc/ca.pem", "--metrics-port", "9090")
    assert (config.max_images, config.read_timeout, config.max_connections) == (32, 2.5, 64)
    assert (config.keep_alive_timeout, config.shutdown_grace) == (30, 20.0)
    assert config.client_ca == Path("/etc/ca.pem") and config.metrics_port == 9090


def test_help_shows_every_default() -> None:
    _parser, commands = build_parser()
    serve_parser = commands["serve"][0]
    for action in serve_parser._actions:
        if action.option_strings and action.dest != "help":
            assert "default" in (action.help or ""), f"{action.option_strings[0]} does not say its default"
    text = " ".join(serve_parser.format_help().split())
    for shown in ("(default 256)", "(default 10)", "(default 1000)", "(default 5)", "(default 3600)",
                  "(default 30)", "(default 300)", "(default 60)"):
        assert shown in text, shown


def test_ttls_and_mirrors() -> None:
    config = parse("serve", "--deny-ttl", "0.5", "--allow-ttl", "60", "--registry-mirror", "docker.io=http://127.0.0.1:5000")
    assert (config.deny_ttl, config.allow_ttl) == (0.5, 60.0)
    assert dict(config.registry_mirrors) == {"docker.io": "http://127.0.0.1:5000"}


def test_without_policies_nothing_is_loaded_and_no_match_decides() -> None:
    # The examples are examples: a fresh `signet serve` must not admit anything because of them.
    loaded = load_policies(ServerConfig())
    assert loaded.result.ok and not loaded.result.policies
    assert loaded.policy_set.select("ghcr.io/anyone/app:v1").unmatched_action is NoMatchPolicy.DENY
    assert loaded.source == "none (--policies not given)"


def test_example_policies_load_cleanly() -> None:
    examples = list((PROJECT / "policies" / "examples").glob("*.yaml"))
    loaded = load_policies(ServerConfig(policies_dir=PROJECT / "policies" / "examples"))
    assert loaded.result.ok, loaded.result.problems
    assert examples and loaded.result.policies


def test_missing_policy_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not a directory"):
        load_policies(ServerConfig(policies_dir=tmp_path / "missing"))


def test_unreadable_trusted_root_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "trusted_root.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match=r"--trusted-root"):
        build_trust(ServerConfig(trust_source="file", trusted_root=bad))


def test_default_trust_is_tuf_with_an_embedded_fallback() -> None:
    provider = build_trust(ServerConfig())
    assert provider.status().dynamic and not provider.ready  # nothing loaded before start()
