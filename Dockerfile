# The vbsearch app: CLI + Streamlit UI. Vectors live in the compose file's Qdrant service.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Pass TORCH_PIP_ARGS (e.g. an --index-url of CPU-only wheels) to keep the image small.
ARG TORCH_PIP_ARGS=""
RUN pip install $TORCH_PIP_ARGS torch torchvision
COPY pyproject.toml README.md ./
COPY vbsearch vbsearch
COPY indexer indexer
COPY search search
COPY model model
COPY ui ui
RUN pip install ".[offline]"

RUN useradd --create-home --uid 1000 vbsearch && mkdir -p /data && chown vbsearch /data
USER vbsearch
EXPOSE 8501
CMD ["vbsearch", "ui", "--host", "0.0.0.0", "--port", "8501"]
