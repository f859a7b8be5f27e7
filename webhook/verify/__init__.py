"""The Sigstore verifier: pure logic, bytes and objects in, verdicts out (no network, no framework)."""
