# droptune: one image for both roles. `api` (the default) migrates the database, then serves the API
# and dashboard on port 8000; `worker` runs a worker. Data (SQLite file, uploads, logs) lives in the
# /data volume; point DROPTUNE_DATABASE_URL at PostgreSQL to share one database between machines.
#
#   docker build -t droptune .
#   docker build --build-arg VARIANT=jax-cuda -t droptune:jax-cuda .    (GPUs: JAX with CUDA 12, see README)
#   docker build --build-arg PIP_INDEX_URL=https://proxy/simple --build-arg PIP_CERT=/run/ca.pem ...
#     (PIP_CERT is a path inside the build: mount or COPY your CA there.)
#
# VARIANT=cpu (default): TensorFlow on CPUs. VARIANT=jax-cuda adds JAX's CUDA 12 wheels
# (requirements-jax-cuda.lock, about 3 GB) and makes JAX the workers' backend (DROPTUNE_KERAS_BACKEND,
# which `docker run -e` still overrides); TensorFlow stays in it for SavedModel exports.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=""
ARG PIP_CERT=""
ARG VARIANT=cpu
RUN case "$VARIANT" in cpu|jax-cuda) ;; *) echo "VARIANT must be cpu or jax-cuda, not $VARIANT" >&2; exit 1 ;; esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock requirements-jax-cuda.lock /tmp/
# Only the run-time locks: no test or lint tools in the image.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
      ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} ${PIP_CERT:+--cert "$PIP_CERT"} \
      -r /tmp/requirements.lock \
      $([ "$VARIANT" = jax-cuda ] && echo "-r /tmp/requirements-jax-cuda.lock") \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/tensorflow/include \
 && if [ "$VARIANT" = jax-cuda ]; then echo jax > /opt/venv/droptune-keras-backend; fi

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/droptune droptune \
 && mkdir -p /data && chown droptune:droptune /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY store ./store
COPY service ./service
COPY tuner ./tuner
COPY models ./models
COPY docker/entrypoint.sh docker/healthcheck.py ./docker/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DROPTUNE_DATA_DIR=/data \
    DROPTUNE_HOST=0.0.0.0 \
    DROPTUNE_PORT=8000 \
    TF_CPP_MIN_LOG_LEVEL=2
VOLUME /data
USER droptune
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "/app/docker/healthcheck.py"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["api"]
