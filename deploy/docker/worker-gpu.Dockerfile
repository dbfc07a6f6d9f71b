# syntax=docker/dockerfile:1
# Atelier GPU worker: Celery + ONNX Runtime with the TensorRT, CUDA and CPU execution providers.
# Build from the repository root:  docker build -f deploy/docker/worker-gpu.Dockerfile -t atelier-worker-gpu .
#
# onnxruntime-gpu 1.31 from PyPI links CUDA 13 (libcudart.so.13, libcublas.so.13), cuDNN 9 and
# TensorRT 10 (libnvinfer.so.10, libnvonnxparser.so.10): the base image brings the CUDA runtime
# and cuDNN, the tensorrt-cu13-libs wheel pinned in requirements-gpu.txt brings TensorRT.
# Keep the three in step when bumping one.
# The host needs an NVIDIA driver new enough for CUDA 13 and the NVIDIA container toolkit.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
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
COPY deploy/docker/requirements-gpu.txt ./
# The worker-gpu extra is onnxruntime-gpu on Linux x86_64; no torch.
RUN pip install --no-cache-dir ".[worker-gpu]" -r requirements-gpu.txt \
    && ln -s "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/tensorrt_libs" /opt/tensorrt_libs

FROM ${CUDA_IMAGE}
LABEL org.opencontainers.image.title="atelier-worker-gpu" \
      org.opencontainers.image.description="Atelier Celery worker on NVIDIA GPUs (ONNX Runtime TensorRT/CUDA)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --create-home atelier \
    && install -d -o 10001 -g 10001 /data/datasets
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/tensorrt_libs /opt/tensorrt_libs
ENV PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/tensorrt_libs:/usr/local/cuda/lib64 \
    PYTHONUNBUFFERED=1 \
    ATELIER_WORKER_METRICS_PORT=9465 \
    ATELIER_MODEL_REPOSITORY=/app/models \
    ATELIER_DATASET_DIR=/data/datasets \
    ATELIER_EXECUTION_PROVIDERS=auto \
    ATELIER_TRT_ENGINE_CACHE=/app/.cache/trt
WORKDIR /app
COPY models ./models
# TensorRT engines are built on first use per GPU model; mount a volume here to keep them.
RUN mkdir -p /app/.cache/trt && chown -R 10001:10001 /app/.cache
VOLUME ["/app/.cache/trt"]
USER 10001:10001
EXPOSE 9465
# A worker is healthy when its Celery node answers a ping through the broker.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "celery -A services.worker.celery_app inspect ping --timeout 10 -d \"celery@$HOSTNAME\""]
# Celery's warm shutdown on SIGTERM lets running jobs finish (up to the hard time limit).
STOPSIGNAL SIGTERM
ENTRYPOINT ["atelier", "worker"]
