"""``spec.match``: which objects a policy covers, as policy-controller decides it (resource, version, labels)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from webhook.policy.resources import LabelSelector, MatchResource, policy_applies

DEPLOYMENTS = {"group": "apps", "version": "v1", "resource": "deployments"}


def entry(**fields: Any) -> MatchResource:
    return MatchResource.model_validate(fields)


@pytest.mark.parametrize(
    ("match", "gvr", "labels", "covered"),
    [
        ([], ("", "v1", "pods"), {}, True),  # no match: every workload
        ([DEPLOYMENTS], ("apps", "v1", "deployments"), {}, True),
        ([DEPLOYMENTS], ("", "v1", "pods"), {}, False),  # another resource is not covered at all
        ([DEPLOYMENTS], ("apps", "v1beta2", "deployments"), {}, False),
        ([{**DEPLOYMENTS, "version": "*"}], ("apps", "v1beta2", "deployments"), {}, True),
        ([{"version": "v1", "resource": "deployments"}], ("apps", "v1", "deployments"), {}, False),  # group exact
        ([{"version": "v1", "resource": "pods"}, DEPLOYMENTS], ("apps", "v1", "deployments"), {}, True),  # any entry
        ([{**DEPLOYMENTS, "selector": {"matchLabels": {"tier": "web"}}}], ("apps", "v1", "deployments"),
         {"tier": "web", "x": "y"}, True),
        ([{**DEPLOYMENTS, "selector": {"matchLabels": {"tier": "web"}}}], ("apps", "v1", "deployments"),
         {"tier": "db"}, False),
        ([{**DEPLOYMENTS, "selector": {"matchLabels": {"tier": "web"}}}], ("apps", "v1", "deployments"), {}, False),
        ([{**DEPLOYMENTS, "selector": {}}], ("apps", "v1", "deployments"), {}, True),  # empty selector: everything
    ],
)
def test_policy_applies_like_policy_controller(match: list[dict[str, Any]], gvr: tuple[str, str, str],
                                               labels: dict[str, str], covered: bool) -> None:
    entries = [MatchResource.model_validate(m) for m in match]
    assert policy_applies(entries, *gvr, labels) is covered


@pytest.mark.parametrize(
    ("expression", "labels", "holds"),
    [
        ({"key": "env", "operator": "In", "values": ["prod", "stage"]}, {"env": "prod"}, True),
        ({"key": "env", "operator": "In", "values": ["prod"]}, {"env": "dev"}, False),
        ({"key": "env", "operator": "In", "values": ["prod"]}, {}, False),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "dev"}, True),
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {}, True),  # Kubernetes: absent is "not in"
        ({"key": "env", "operator": "NotIn", "values": ["prod"]}, {"env": "prod"}, False),
        ({"key": "env", "operator": "Exists"}, {"env": ""}, True),
        ({"key": "env", "operator": "Exists"}, {}, False),
        ({"key": "env", "operator": "DoesNotExist"}, {}, True),
        ({"key": "example.com/env", "operator": "DoesNotExist"}, {"example.com/env": "x"}, False),
    ],
)
def test_match_expressions_follow_kubernetes_semantics(expression: dict[str, Any], labels: dict[str, str],
                                                       holds: bool) -> None:
    selector = LabelSelector.model_validate({"matchExpressions": [expression]})
    assert selector.matches(labels) is holds


def test_every_term_of_a_selector_must_hold() -> None:
    selector = LabelSelector.model_validate({"matchLabels": {"app": "api"},
                                             "matchExpressions": [{"key": "env", "operator": "In",
                                                                   "values": ["prod"]}]})
    assert selector.matches({"app": "api", "env": "prod"})
    assert not selector.matches({"app": "api", "env": "dev"})
    assert not selector.matches({"env": "prod"})


@pytest.mark.parametrize(
    ("fields", "location", "words"),
    [
        ({"resource": "apple", "version": "v1", "group": "apps"}, ("resource",), "unsupported resource name 'apple'"),
        ({"selector": {"matchLabels": {"a": "b"}}}, ("selector",), "requires a resource type"),
        ({**DEPLOYMENTS, "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         ("selector", "matchExpressions", 0), "needs at least one value"),
        ({**DEPLOYMENTS, "selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
         ("selector", "matchExpressions", 0), "takes no values"),
        ({**DEPLOYMENTS, "selector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}},
         ("selector", "matchExpressions", 0, "operator"), "In"),
        ({**DEPLOYMENTS, "selector": {"matchLabels": {"bad key": "x"}}}, ("selector", "matchLabels"),
         "invalid label key 'bad key'"),
        ({**DEPLOYMENTS, "selector": {"matchLabels": {"a": "-x"}}}, ("selector", "matchLabels"),
         "invalid label value '-x'"),
    ],
)
def test_invalid_entries_are_refused_at_the_field(fields: dict[str, Any], location: tuple[Any, ...],
                                                  words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MatchResource.model_validate(fields)
    (error,) = caught.value.errors()
    assert error["loc"] == location and words in error["msg"], error


@pytest.mark.parametrize("resource", ["pods", "replicasets", "deployments", "statefulsets", "daemonsets", "jobs",
                                      "cronjobs", ""])
def test_the_workload_resources_policy_controller_accepts(resource: str) -> None:
    assert entry(resource=resource, version="v1").resource == resource
