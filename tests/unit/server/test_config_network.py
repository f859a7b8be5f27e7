"""The flags of issue 12: registry connections per host, warm-up, and the tuned images-in-flight bound."""

from __future__ import annotations

import pytest

from tests.unit.server.test_config import parse
from webhook.cli import build_parser
from webhook.errors import InputError


def test_network_defaults() -> None:
    config = parse("serve")
    assert (config.registry_connections_per_host, config.warm_up_timeout, config.images_in_flight) == (32, 5.0, 32)


def test_network_flags() -> None:
    config = parse("serve", "--registry-connections-per-host", "4", "--warm-up-timeout", "0")
    assert (config.registry_connections_per_host, config.warm_up_timeout) == (4, 0.0)


@pytest.mark.parametrize(("argv", "message"), [
    (["--registry-connections-per-host", "0"], "--registry-connections-per-host must be at least 1"),
    (["--warm-up-timeout", "-1"], "--warm-up-timeout must be 0"),
    (["--warm-up-timeout", "nan"], "--warm-up-timeout must be 0"),
])
def test_impossible_network_flags(argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse("serve", *argv)


def test_help_shows_the_network_defaults() -> None:
    _parser, commands = build_parser()
    text = " ".join(commands["serve"][0].format_help().split())
    assert "requests in flight to one registry that speaks only HTTP/1.1" in text and "(default 32)" in text
    assert "(0: none, only what needs no network; default 5)" in text
