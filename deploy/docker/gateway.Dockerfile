# syntax=docker/dockerfile:1
# Atelier gRPC gateway: protobuf, grpc, redis, prometheus-client, and ONNX Runtime (CPU) for the prompt
# check's text encoder (docs/ARCHITECTURE.md, "Content policies"). No torch.
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t atelier-gateway .
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
# The worker extra (the server's packages and CPU ONNX Runtime): the prompt check runs the default
# model's text encoder; no torch (the project's own pyproject.toml bounds its versions, which DL3013
# cannot see).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[worker]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atelier-gateway" \
      org.opencontainers.image.description="Atelier gRPC gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home atelier
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/grpc_health_check.py /usr/local/bin/grpc-health-check
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATELIER_GRPC_LISTEN=0.0.0.0:50051 \
    ATELIER_HTTP_LISTEN=0.0.0.0:8080 \
    ATELIER_GATEWAY_METRICS_PORT=9464 \
    ATELIER_MODEL_REPOSITORY=/app/models
WORKDIR /app
# The gateway reads manifests (ListModels, request defaults) and the default model's text encoder
# (the prompt check); the shipped model is baked in, a studio's own repository is mounted over /app/models.
COPY models ./models
USER 10001:10001
EXPOSE 50051 8080 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["grpc-health-check", "--timeout", "3"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["atelier", "gateway"]
