# syntax=docker/dockerfile:1
# Atelier CPU worker: Celery + ONNX Runtime (CPU execution provider). For laptops, CI and
# CPU-only pools; the same code as the GPU worker, a much smaller image.
# Build from the repository root:  docker build -f deploy/docker/worker-cpu.Dockerfile -t atelier-worker-cpu .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY atelier ./atelier
COPY diffusion ./diffusion
COPY export ./export
COPY services ./services
COPY repository ./repository
COPY clients ./clients
COPY atelier_cli ./atelier_cli
COPY bench ./bench
COPY deploy/docker/requirements-cpu.txt ./
# The worker extra is the plain CPU onnxruntime wheel; requirements-cpu.txt pins its version.
RUN pip install --no-cache-dir ".[worker]" -r requirements-cpu.txt

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atelier-worker-cpu" \
      org.opencontainers.image.description="Atelier Celery worker on CPUs (ONNX Runtime)" \
      org.opencontainers.image.licenses="Apache-2.0"
# /data/datasets: where dataset jobs write (a volume in compose and Kubernetes), the worker's own.
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home atelier \
    && install -d -o 10001 -g 10001 /data/datasets
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATELIER_WORKER_METRICS_PORT=9465 \
    ATELIER_MODEL_REPOSITORY=/app/models \
    ATELIER_DATASET_DIR=/data/datasets \
    ATELIER_EXECUTION_PROVIDERS=CPUExecutionProvider
WORKDIR /app
COPY models ./models
USER 10001:10001
EXPOSE 9465
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "celery -A services.worker.celery_app inspect ping --timeout 10 -d \"celery@$HOSTNAME\""]
STOPSIGNAL SIGTERM
ENTRYPOINT ["atelier", "worker"]
