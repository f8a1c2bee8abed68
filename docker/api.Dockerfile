# syntax=docker/dockerfile:1
# The REST API (python -m api) with the CPU build of PyTorch: the API only runs trained models for
# /predict, so it needs no CUDA (about 1 GB smaller). docker-compose.cpu.yml also runs CPU workers
# from this image. Build context: the repository root (docker build -f docker/api.Dockerfile .).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
# PyTorch first, from the CPU index: its +cpu builds satisfy the pins in constraints.txt; the
# extra index serves PyTorch's own dependencies at their pinned versions.
RUN pip install -c /tmp/constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        torch torchvision
# The remaining dependencies, from pyproject.toml alone (no code yet), so that this layer is rebuilt
# only when dependencies change. The code itself runs from /app (see below), as in a checkout.
WORKDIR /src
COPY pyproject.toml ./
# pyproject.toml names README.md; an empty one will do (the real one would only bust this cache).
RUN touch README.md && pip install -c /tmp/constraints.txt '.[service]'

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app
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
COPY api api
USER fflab
ENV FF_API_HOST=0.0.0.0 FF_API_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "api"]
