# Classe server image: `docker build -t classe .`, then one of (203.0.113.7: the host's public address).
# Media is UDP and browsers on other machines must reach it: by default it binds 127.0.0.1 only.
# - On the host's network, bind the media to the host's address:
#     docker run --network host -e CLASSE_MEDIA_ADDRESSES='["203.0.113.7"]' classe
# - On the default bridge network, publish the media port (one UDP port for every participant),
#   bind every address inside the container and announce the host's (the only one browsers reach):
#     docker run -p 8080:8080 -p 40000:40000/udp \
#       -e CLASSE_MEDIA_ADDRESSES='["0.0.0.0"]' -e CLASSE_MEDIA_ANNOUNCED_ADDRESS=203.0.113.7 classe
# Behind the TLS proxy that serves https (browsers need it for cameras); TURN: docs/operations.md.
FROM python:3.11-slim-bookworm

RUN useradd --create-home --uid 10001 classe && mkdir /data && chown classe /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu sfu
COPY signaling signaling
COPY web_client web_client
RUN pip install --no-cache-dir .

USER classe
ENV CLASSE_HOST=0.0.0.0 CLASSE_DATA_DIR=/data
# The SQLite database and the mail outbox (when no database_url / smtp_host is set).
VOLUME /data
EXPOSE 8080 40000/udp
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
CMD ["classe", "serve"]
