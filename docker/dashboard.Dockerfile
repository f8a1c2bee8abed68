# syntax=docker/dockerfile:1
# The Streamlit dashboard (python -m dashboard): no PyTorch, no Redis client, only the dashboard
# extra. It talks to the API at FF_API_URL. Build context: the repository root.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/constraints.txt /tmp/constraints.txt
WORKDIR /src
COPY pyproject.toml ./
# pyproject.toml names README.md; an empty one will do (the real one would only bust this cache).
RUN touch README.md && pip install -c /tmp/constraints.txt '.[dashboard]'

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app
RUN useradd --create-home --uid 10001 fflab
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The dashboard's own code only: presets and the run schema come from the API (GET /api/v1/run-options).
COPY dashboard dashboard
USER fflab
ENV FF_DASHBOARD_HOST=0.0.0.0 FF_DASHBOARD_PORT=8501
EXPOSE 8501
CMD ["python", "-m", "dashboard"]
