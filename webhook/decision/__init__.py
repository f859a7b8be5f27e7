"""Deciding images: the engine shared by ``signet serve`` and ``signet evaluate``, its plans, caches and verdicts."""

from webhook.decision.engine import Engine
from webhook.decision.settings import NOT_IN_TIME, EngineSettings, ImageDecision, OnError

__all__ = ["NOT_IN_TIME", "Engine", "EngineSettings", "ImageDecision", "OnError"]
