"""Signet: a Kubernetes admission webhook that admits only images signed by allowed Sigstore identities."""

__version__ = "0.1.0"
