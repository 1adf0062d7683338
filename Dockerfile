# strm-bridge in a container: a virtualenv, a non-root user, the database in the /data volume,
# the library under /media, the configuration (optional) at /config/strm-bridge.toml.
# BASE must be a Debian-like image with python3 (>= 3.11) and its venv module.
ARG BASE=python:3.12-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/strm-bridge \
    PATH=/opt/strm-bridge/bin:$PATH

RUN python3 -m venv /opt/strm-bridge \
 && groupadd --system --gid 1000 strm \
 && useradd --system --uid 1000 --gid strm --home-dir /data --no-create-home --shell /usr/sbin/nologin strm \
 && mkdir -p /data /media /config \
 && chown strm:strm /data

COPY pyproject.toml README.md LICENSE /src/
COPY bridge /src/bridge
COPY integrations /src/integrations
COPY schema /src/schema
# The system CA bundle when the base has one: pip then trusts what the host trusts (e.g. an HTTPS proxy's CA).
RUN if [ -f /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi \
 && pip install /src \
 && rm -rf /src

# Inside the container strm-bridge must listen on every interface: Jellyfin reaches it over the network.
ENV STRM_BRIDGE_DATA=/data \
    STRM_BRIDGE_SERVER_HOST=0.0.0.0 \
    STRM_BRIDGE_SERVER_PORT=8765

USER strm
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('STRM_BRIDGE_SERVER_PORT', '8765'), timeout=4)"]
ENTRYPOINT ["strm-bridge"]
CMD ["serve"]
