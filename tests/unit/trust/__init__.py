"""Tests of webhook.trust."""
