# syntax=docker/dockerfile:1
# Atelier trainer/exporter: torch, diffusers, ONNX export and evaluation (`atelier data|train|eval|export`).
# Not a service: run it as a job, with the data, runs and model repository mounted.
# Build from the repository root:  docker build -f deploy/docker/trainer.Dockerfile -t atelier-trainer .
# PyPI's torch wheel for Linux x86_64 is a CUDA build that carries its own CUDA libraries, so this
# image trains on a GPU (`docker run --gpus all`) and on a CPU alike; pass
# --build-arg TORCH_SPEC=... to pick another release.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
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
# torch first and pinned, so the train extra's `torch>=2.4` is already satisfied.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "${TORCH_SPEC}" \
    && pip install --no-cache-dir ".[train,worker]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atelier-trainer" \
      org.opencontainers.image.description="Atelier training, evaluation and ONNX export" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --home-dir /work --create-home atelier
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    ATELIER_MODEL_REPOSITORY=/work/models
WORKDIR /work
# The shipped model, as a starting point for fine-tuning; mount /work/models to export into a volume.
COPY models ./models
USER 10001:10001
# A batch job, not a service: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["atelier"]
CMD ["--help"]
