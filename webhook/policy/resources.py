"""``spec.match``: which objects under review a policy applies to (policy-controller's MatchResource).

A policy with no ``match`` applies to every workload. With entries, it applies to an object when
one entry names its resource (group, version, plural resource name; version ``*`` matches any)
and, if the entry has a ``selector``, the object's own labels (``metadata.labels`` of the object
under review, not of its pod template) satisfy that Kubernetes label selector. An object no
entry matches is not covered by the policy at all, as in policy-controller.

The evaluator is pure: the caller gives the admission request's resource and the object's labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.policy._base import Model

# The resources policy-controller accepts in a MatchResource (its validResourceNames).
WORKLOAD_RESOURCES = frozenset({"pods", "replicasets", "deployments", "statefulsets", "daemonsets", "jobs",
                                "cronjobs"})
MAX_MATCH = 32
MAX_SELECTOR_TERMS = 64
MAX_VALUES = 64

# Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = re.compile(rf"(?:{_DNS_SUBDOMAIN}/)?{_NAME}")
_LABEL_VALUE = re.compile(rf"(?:{_NAME})?")
_MAX_PREFIX = 253


def _check_key(key: str) -> str:
    prefix, slash, _ = key.rpartition("/")
    if _LABEL_KEY.fullmatch(key) is None or (slash and len(prefix) > _MAX_PREFIX):
        raise PydanticCustomError("label_key", "invalid label key '{key}': an optional DNS subdomain prefix and '/', "
                                  "then up to 63 characters of [A-Za-z0-9-_.] starting and ending alphanumeric",
                                  {"key": key})
    return key


def _check_value(value: str) -> str:
    if _LABEL_VALUE.fullmatch(value) is None:
        raise PydanticCustomError("label_value", "invalid label value '{value}': up to 63 characters of "
                                  "[A-Za-z0-9-_.] starting and ending alphanumeric", {"value": value})
    return value


class LabelRequirement(Model):
    """One ``matchExpressions`` term: ``key`` ``operator`` ``values``."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, max_length=MAX_VALUES)

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        return _check_key(value)

    @field_validator("values")
    @classmethod
    def _valid_values(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_value(item)
        return value

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelRequirement:
        # Kubernetes' LabelSelectorAsSelector rules: a set operator needs values, an existence one none.
        if self.operator in ("In", "NotIn") and not self.values:
            raise PydanticCustomError("selector", "operator {op} needs at least one value", {"op": self.operator})
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise PydanticCustomError("selector", "operator {op} takes no values", {"op": self.operator})
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: ``NotIn`` and ``DoesNotExist`` hold for an object without the label."""
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


class LabelSelector(Model):
    """A Kubernetes label selector; every term must hold (an empty selector matches every object)."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelRequirement] = Field(default_factory=list, max_length=MAX_SELECTOR_TERMS)

    @field_validator("match_labels")
    @classmethod
    def _valid_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_SELECTOR_TERMS:
            raise PydanticCustomError("selector", "at most {n} matchLabels", {"n": MAX_SELECTOR_TERMS})
        for key, item in value.items():
            _check_key(key)
            _check_value(item)
        return value

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every matchLabels entry and every matchExpressions term."""
        return (all(labels.get(k) == v for k, v in self.match_labels.items())
                and all(term.matches(labels) for term in self.match_expressions))


class MatchResource(Model):
    """One ``spec.match`` entry: a resource (group, version, plural name) and an optional label selector."""

    group: str = Field(default="", max_length=253)
    version: str = Field(default="", max_length=63)
    resource: str = Field(default="", max_length=63)
    selector: LabelSelector | None = None

    @field_validator("resource")
    @classmethod
    def _workload_resource(cls, value: str) -> str:
        if value and value not in WORKLOAD_RESOURCES:
            raise PydanticCustomError("resource", "unsupported resource name '{value}'; one of {known}",
                                      {"value": value, "known": ", ".join(sorted(WORKLOAD_RESOURCES))})
        return value

    @field_validator("selector")
    @classmethod
    def _selector_needs_a_resource(cls, value: LabelSelector | None, info: ValidationInfo) -> LabelSelector | None:
        # The fields above are validated first; a missing one means it was invalid (reported already).
        named = [info.data.get(k) for k in ("group", "version", "resource")]
        if value is not None and not any(named) and all(k in info.data for k in ("group", "version", "resource")):
            raise PydanticCustomError("selector", "selector requires a resource type to match the labels")
        return value

    def matches(self, group: str, version: str, resource: str, labels: Mapping[str, str]) -> bool:
        """This entry names the resource (version ``*`` matches any) and its selector, if any, holds."""
        if (self.resource, self.group) != (resource, group) or self.version not in (version, "*"):
            return False
        return self.selector is None or self.selector.matches(labels)


def policy_applies(match: Sequence[MatchResource], group: str, version: str, resource: str,
                   labels: Mapping[str, str]) -> bool:
    """Whether a policy with these ``match`` entries covers an object of ``group/version/resource`` with ``labels``.

    ``group`` is ``""`` for the core group (pods); ``labels`` are the object's ``metadata.labels``.
    """
    return not match or any(entry.matches(group, version, resource, labels) for entry in match)
