# syntax=docker/dockerfile:1
# The API image: `docker build -t sonarly-api .`, then run it with DATABASE_URL and
# API_KEY_PEPPER set (docker-compose.yml shows the whole stack). Migrations are a separate,
# one-shot run of the same image: `sonarly-api db upgrade`.

# --- build: a virtualenv with the dependencies and the project ----------------------------
FROM python:3.12-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies first, from pyproject.toml alone with a placeholder package, so that a source
# change does not reinstall them. Every dependency has a wheel for Linux: no compiler.
COPY pyproject.toml README.md ./
RUN mkdir -p src/sonarly_api \
    && touch src/sonarly_api/__init__.py \
    && pip install . \
    && pip uninstall --yes sonarly-api \
    && rm -rf src build

# The project, installed in place (editable) in /app: migrations.py finds alembic.ini two
# levels above its own file, /app/src/sonarly_api -> /app, as in a checkout.
COPY alembic.ini ./
COPY alembic ./alembic
COPY src ./src
RUN pip install --no-deps --editable . \
    && python -m compileall -q src /opt/venv/lib

# --- runtime: the virtualenv and the application, as an unprivileged user ----------------
FROM python:3.12-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sonarly
# Same paths as in the builder: the venv's scripts and the editable install point there.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Numeric, so that the runtime can check it is not root without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000
# Liveness only (no database): slim has no curl, Python's urllib does the request, and any
# non-2xx answer or a refused connection raises, which makes the check fail.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["sonarly-api"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
