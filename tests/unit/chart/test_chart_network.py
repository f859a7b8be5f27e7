"""The chart's side of issue 12: registry connections per host and warm-up, as flags."""

from __future__ import annotations

import pytest
from helm_python.errors import HelmError

from tests.unit.chart.rendering import Obj, Rendered, render


def test_network_settings_are_passed_with_their_defaults() -> None:
    rendered = Rendered()
    assert rendered.flag("--registry-connections-per-host") == "32"
    assert rendered.flag("--warm-up-timeout") == "5"


def test_network_settings_follow_the_values() -> None:
    rendered = Rendered({"registry": {"connectionsPerHost": 8, "warmUpTimeoutSeconds": 0}})
    assert rendered.flag("--registry-connections-per-host") == "8"
    assert rendered.flag("--warm-up-timeout") == "0"  # warm-up off


@pytest.mark.parametrize(("values", "message"), [
    ({"registry": {"connectionsPerHost": 0}}, r"/registry/connectionsPerHost"),
    ({"registry": {"warmUpTimeoutSeconds": -1}}, r"/registry/warmUpTimeoutSeconds"),
])
def test_impossible_network_settings_fail_the_render(values: Obj, message: str) -> None:
    with pytest.raises(HelmError, match=message):
        render(values)
