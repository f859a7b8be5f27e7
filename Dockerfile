# syntax=docker/dockerfile:1
#
# Signet webhook image: a wheel built in one stage, installed into a virtualenv, and copied into a
# runtime stage that runs as the numeric non-root user 65532 with no shell use at runtime.
#
# Base images are pinned by exact version tag. For release builds also pin the digest, so a
# re-pushed tag cannot change what we ship:
#   docker buildx imagetools inspect python:3.11.9-slim-bookworm --format '{{json .Manifest.Digest}}'
# and write it as `FROM python:3.11.9-slim-bookworm@sha256:<digest>` in both stages below (the
# runtime stage must keep the same interpreter as the builder: the virtualenv links to it).

FROM python:3.11.9-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook

# 1. Wheels: Signet itself (--no-deps), then every dependency it declares. Only wheels leave this step.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels/deps /wheels/signet-*.whl

# 2. Install from those wheels only (no index, no source builds), into a virtualenv the runtime
#    stage copies as is; pip and setuptools are removed from it afterwards.
RUN python -m venv /opt/signet \
 && /opt/signet/bin/pip install --no-index --find-links /wheels --find-links /wheels/deps signet \
 && /opt/signet/bin/pip uninstall --yes pip setuptools \
 && /opt/signet/bin/signet --version \
 && mkdir -p /var/cache/signet/cache /var/cache/signet/data

FROM python:3.11.9-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="signet" \
      org.opencontainers.image.description="Kubernetes admission webhook admitting only images signed by allowed Sigstore identities" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /opt/signet /opt/signet
# The TUF cache (XDG_CACHE_HOME / XDG_DATA_HOME); Kubernetes mounts an emptyDir over it.
COPY --from=builder --chown=65532:65532 /var/cache/signet /var/cache/signet

ENV PATH=/opt/signet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/cache/signet \
    XDG_CACHE_HOME=/var/cache/signet/cache \
    XDG_DATA_HOME=/var/cache/signet/data

USER 65532:65532
EXPOSE 8443
# Kubernetes probes /healthz and /readyz; the image needs no shell-based health check.
HEALTHCHECK NONE

ENTRYPOINT ["signet"]
# The same TLS and policy paths as the Helm chart's container args (a test keeps them equal).
CMD ["serve", "--host", "0.0.0.0", "--port", "8443", "--tls-cert", "/etc/signet/tls/tls.crt", "--tls-key", "/etc/signet/tls/tls.key", "--policies", "/etc/signet/policies"]
