"""Trust distribution: embedded roots, the TUF client, the server's trust-root provider.

Everything that decides *which* ``trusted_root.json`` Signet verifies against lives here;
``webhook.verify`` only ever receives the parsed :class:`~webhook.verify.trustroot.TrustedRoot`.
"""
