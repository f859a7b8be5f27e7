"""Tests of the Helm chart (charts/signet) and the container image definition (Dockerfile)."""
