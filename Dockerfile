# syntax=docker/dockerfile:1
# One image for every eventfed deployable: `eventfed listen | stream | api | topics ...`.
#
#   docker build -t eventfed/eventfed:0.1.0 .
#
# The build stage has a compiler for any dependency without a wheel for this platform; the
# runtime stage gets only the finished virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The compiler follows the base image's Debian release and never reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/eventfed
ENV PATH=/opt/eventfed/bin:$PATH
WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the pins change, not on every
# source edit. The list comes from pyproject.toml; constraints.txt pins every version.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

COPY . .
# pip compiles the bytecode here: the runtime root filesystem is read-only.
RUN pip install -c constraints.txt . \
 && eventfed --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="eventfed" \
      org.opencontainers.image.description="OpenStack Nova VM status notifications to Kafka and ONAP DMaaP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid/gid so Kubernetes runAsUser/fsGroup (10001 in the Helm chart) match the files here.
RUN groupadd --system --gid 10001 eventfed \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin eventfed \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/eventfed \
 && install -d -m 0755 /etc/eventfed

COPY --from=build /opt/eventfed /opt/eventfed

# The root filesystem is read-only in Kubernetes: no .pyc writes, HOME on the /tmp emptyDir.
ENV PATH=/opt/eventfed/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    EVENTFED_DATA_DIR=/var/lib/eventfed

USER 10001:10001
WORKDIR /tmp
# 8080: `eventfed api`; 9100: /healthz, /readyz and /metrics of `listen` and `stream`.
EXPOSE 8080 9100
ENTRYPOINT ["eventfed"]
CMD ["--help"]
