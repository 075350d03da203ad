# The inference service: FastAPI + the framework-free core, without dagster.
# Build from the repository root:  docker build -f deploy/docker/serving.Dockerfile -t reckit-serving .
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RECKIT_SERVING_HOST=0.0.0.0 \
    RECKIT_SERVING_PORT=8000 \
    RECKIT_FEEDBACK_URI=none

WORKDIR /opt/reckit

# Only what serving imports, at the tested pins; the project itself with --no-deps so that
# pyproject's dagster dependencies are never installed (checked below and by a test).
COPY constraints.txt deploy/docker/serving-requirements.txt ./
RUN pip install --no-cache-dir -c constraints.txt -r serving-requirements.txt
COPY pyproject.toml README.md ./
COPY reckit_assets ./reckit_assets
COPY serving ./serving
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('dagster') is not None)" \
    && python -c "import serving.app"

RUN groupadd --gid 10001 reckit \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin reckit
USER 10001:10001

EXPOSE 8000
# /health answers 503 until a model is loaded: the container is healthy once it serves.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["python", "-m", "serving", "--workers", "2"]
