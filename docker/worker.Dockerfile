# syntax=docker/dockerfile:1
# The training worker (python -m worker) with the CUDA build of PyTorch: PyPI's Linux wheels bundle
# the CUDA libraries, and the NVIDIA Container Toolkit supplies the driver, so a slim Python base
# image is enough. Build context: the repository root (docker build -f docker/worker.Dockerfile .).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
# Dependencies from pyproject.toml alone (no code yet), so that this layer, the big one, is rebuilt
# only when dependencies change. The code itself runs from /app (see below), as in a checkout.
WORKDIR /src
COPY pyproject.toml ./
# pyproject.toml names README.md; an empty one will do (the real one would only bust this cache).
RUN touch README.md && pip install -c /tmp/constraints.txt '.[service]'

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# The dataset cache directory exists (owned by the user) so that the named volume mounted on it
# in docker-compose.yml starts with the right owner; MNIST is downloaded into it once.
RUN useradd --create-home --uid 10001 fflab \
    && mkdir -p /home/fflab/.cache/fflab/datasets && chown -R fflab:fflab /home/fflab/.cache
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY ffcore ffcore
COPY fflab fflab
COPY worker worker
# The commit the image was built from, for each run's provenance (an image holds no .git):
# FF_GIT_COMMIT=$(git rev-parse HEAD) docker compose build. Declared late: it busts no cached layer.
ARG GIT_COMMIT=""
ENV FF_GIT_COMMIT=${GIT_COMMIT}
USER fflab
CMD ["python", "-m", "worker"]
