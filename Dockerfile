# syntax=docker/dockerfile:1
# DeepSeek-Alpha: build in the CUDA devel image, run in the CUDA runtime image.
#   docker build -t deepseek-alpha .
#   docker run --gpus all -p 8000:8000 -v /data/models/DeepSeek-V3:/model:ro \
#     -v /etc/deepseek-alpha/api-keys:/run/secrets/api-keys:ro deepseek-alpha
# One container serves one node (head + DSA_TP x DSA_PP workers under
# mpirun; tools/deploy/docker-entrypoint.sh, tested against the built
# programs by tools/deploy/entrypoint-test.sh). The two-node EFA deployment runs on the hosts (ansible/), where
# the EFA devices, Fabric Manager and SSH between nodes are at hand.
#
# CPU variant (no CUDA, no NCCL), the same steps on a Debian 12 base; built
# and started in CI by tools/deploy/image-test.sh (docs/deploy.md):
#   docker build -t deepseek-alpha:cpu --build-arg DEVICE=cpu \
#     --build-arg BUILD_BASE=debian:12 --build-arg RUNTIME_BASE=debian:12 \
#     --build-arg BUILD_EXTRA= \
#     --build-arg "RUNTIME_LIBS=libuv1 libopenmpi3 libssl3" .
# The library packages whose names differ between the bases are the *_LIBS /
# *_EXTRA arguments; the defaults are the Ubuntu 24.04 names (64-bit time_t
# transition: libuv1t64, libopenmpi3t64, libssl3t64).

ARG CUDA_VERSION=12.8.1
ARG UBUNTU=ubuntu24.04
ARG BUILD_BASE=nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU}
ARG RUNTIME_BASE=nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
# cuda: the CUDA backend is built and DSA_DEVICE defaults to cuda; cpu: neither.
ARG DEVICE=cuda

FROM ${BUILD_BASE} AS build
ARG MARCH=x86-64-v3
ARG DEVICE
ARG BUILD_EXTRA=libnccl-dev
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config meson ninja-build \
      libcjson-dev libpcre2-dev libuv1-dev node-llhttp libopenblas-dev libssl-dev \
      libopenmpi-dev openmpi-bin ${BUILD_EXTRA} \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# CUDA images compile FlashInfer's and CUTLASS's kernels against the headers
# of two pinned, sha256-checked PyPI wheels (tools/gpu/headers.sh; README).
RUN test "$DEVICE" = cuda -o "$DEVICE" = cpu \
 && cuda=disabled \
 && if [ "$DEVICE" = cuda ]; then cuda=enabled \
      && apt-get update \
      && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/* \
      && tools/gpu/headers.sh; fi \
 && meson setup /build /src --prefix=/opt/deepseek-alpha --buildtype=release \
      -Dcuda=$cuda -Dmarch=${MARCH} \
 && ninja -C /build \
 && meson install -C /build --destdir /stage

FROM ${RUNTIME_BASE} AS runtime
ARG DEVICE
ARG RUNTIME_LIBS="libuv1t64 libopenmpi3t64 libssl3t64"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl procps libcjson1 libpcre2-8-0 libopenblas0-pthread \
      openmpi-bin ${RUNTIME_LIBS} \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/deepseek-alpha dsa
COPY --from=build /stage/opt/deepseek-alpha /opt/deepseek-alpha
COPY tools/deploy/docker-entrypoint.sh /usr/local/bin/dsa-entrypoint
ENV PATH=/opt/deepseek-alpha/bin:$PATH \
    DSA_MODEL=/model \
    DSA_PORT=8000 \
    DSA_API_KEY_FILE=/run/secrets/api-keys \
    DSA_TP=8 \
    DSA_PP=1 \
    DSA_DEVICE=${DEVICE} \
    DSA_SERVED_MODEL_NAME=deepseek-ai/DeepSeek-V3
USER dsa
WORKDIR /var/lib/deepseek-alpha
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${DSA_PORT}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/dsa-entrypoint"]
