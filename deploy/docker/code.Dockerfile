# The code location image: `dagster api grpc` (code server), run workers and every step pod.
# Build from the repository root:  docker build -f deploy/docker/code.Dockerfile -t reckit-code .
# The compose stack also runs dagster-webserver and dagster-daemon from it (same pinned set).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    RECKIT_ENV=prod

WORKDIR /opt/reckit

# torch from PyPI is the CUDA-enabled build (the DeepFM step uses the GPU node's driver); pass
# --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for a smaller CPU-only image.
ARG TORCH_INDEX_URL=https://pypi.org/simple
COPY constraints.txt pyproject.toml README.md ./
COPY reckit_assets ./reckit_assets
COPY serving ./serving
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        -c constraints.txt torch==2.13.0 \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip check

COPY workspace.yaml ./workspace.yaml
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml

RUN groupadd --gid 10001 reckit \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin reckit \
    && chown -R 10001:10001 ${DAGSTER_HOME}
USER 10001:10001

EXPOSE 3030
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "3030"]
CMD ["dagster", "api", "grpc", "-m", "reckit_assets.definitions", "-h", "0.0.0.0", "-p", "3030", \
     "--location-name", "reckit_assets"]
