"""Signet in the cluster: the policy CRD watcher, pull secrets, denial Events, cache pre-warming.

All of it uses the official (synchronous) ``kubernetes`` client from daemon threads or through
``asyncio.to_thread``, never on the event loop.
"""

from __future__ import annotations

from webhook.k8s.client import Backoff, load_api_client
from webhook.k8s.events import IMAGES_ANNOTATION, REASON, USER_ANNOTATION, EventRecorder
from webhook.k8s.prewarm import PrewarmResult, prewarm, running_images
from webhook.k8s.secrets import PullSecrets, SecretKeyError
from webhook.k8s.watch import KINDS, PolicyWatcher, WatchedKind

__all__ = [
    "IMAGES_ANNOTATION",
    "KINDS",
    "REASON",
    "USER_ANNOTATION",
    "Backoff",
    "EventRecorder",
    "PolicyWatcher",
    "PrewarmResult",
    "PullSecrets",
    "SecretKeyError",
    "WatchedKind",
    "load_api_client",
    "prewarm",
    "running_images",
]
