"""Policies: CRD models, loading (files and cluster objects), and image → policy selection.

Pure: documents in, policy objects and matching out; no network and no verification.
"""

from __future__ import annotations

from webhook.policy.authorities import (
    FULCIO_EXTENSION_OIDS,
    Authority,
    HashAlgorithm,
    Identity,
    KeyAuthority,
    KeylessAuthority,
    StaticAuthority,
)
from webhook.policy.globs import GlobError, ImageGlob, compile_glob, normalize_name, split_reference
from webhook.policy.loader import (
    InvalidPolicyError,
    LoadResult,
    PolicyObject,
    PolicyProblem,
    load_directory,
    load_documents,
    load_file,
    load_object,
    load_text,
)
from webhook.policy.matching import PolicySelection, PolicySet, PolicyStore
from webhook.policy.models import (
    API_VERSION,
    ClusterImagePolicy,
    ImagePolicy,
    Mode,
    MultiArch,
    NoMatchPolicy,
    Policy,
    PolicySpec,
    TrustRoot,
)

__all__ = [
    "API_VERSION",
    "FULCIO_EXTENSION_OIDS",
    "Authority",
    "ClusterImagePolicy",
    "GlobError",
    "HashAlgorithm",
    "Identity",
    "ImageGlob",
    "ImagePolicy",
    "InvalidPolicyError",
    "KeyAuthority",
    "KeylessAuthority",
    "LoadResult",
    "Mode",
    "MultiArch",
    "NoMatchPolicy",
    "Policy",
    "PolicyObject",
    "PolicyProblem",
    "PolicySelection",
    "PolicySet",
    "PolicySpec",
    "PolicyStore",
    "StaticAuthority",
    "TrustRoot",
    "compile_glob",
    "load_directory",
    "load_documents",
    "load_file",
    "load_object",
    "load_text",
    "normalize_name",
    "split_reference",
]
