# The lab's one image: the apps, the servers, Locust and the runner, with exactly the versions in requirements.lock.
# Real users build on a public Python image. A machine without a container registry builds its own base first
# (scripts/offline-base-image.sh) and passes it: docker compose build --build-arg BASE_IMAGE=lab-base
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# wrk is the referee the lab checks its own client against over HTTP/1.1, h2load (nghttp2-client) over h2c
# (loadtests/referee.py).
ARG INSTALL_WRK=1
RUN if [ "$INSTALL_WRK" = 1 ]; then \
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nghttp2-client \
      && rm -rf /var/lib/apt/lists/*; \
    fi

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH LAB_IN_CONTAINER=1 LAB_VARIANTS=/lab/variants
WORKDIR /lab

# Dependencies first, in their own layer: editing the lab's code does not reinstall them.
COPY requirements.lock ./
RUN python3 -m venv /opt/venv && pip install -q -r requirements.lock

COPY pyproject.toml README.md ./
COPY apps/ apps/
COPY core/ core/
COPY servers/ servers/
COPY loadtests/ loadtests/
COPY lab/ lab/
RUN pip install -q --no-deps -e . \
    && (pip freeze; find apps core servers loadtests lab -type f -name '*.py' -o -name '*.toml' | sort | xargs cat) \
       | sha256sum | cut -c1-16 > /lab/.image-content \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin lab \
    && mkdir -p /lab/results /lab/variants && chown lab /lab/results /lab/variants \
    && mkdir -m 1777 /lab/secrets

# Containers start as root only for the entrypoint (core/entrypoint.py): it drops to the owner of the mounted results
# folder (or LAB_UID/LAB_GID; without a results folder, the `lab` user above) and execs the command. Every service
# runs in exec form: the process is PID 1's child under `init: true`, and SIGTERM reaches it.
ENTRYPOINT ["python", "-m", "core.entrypoint"]
CMD ["python", "-m", "lab", "--help"]
