# molecule/default's one image: the local base image (Debian bookworm, bash, python3); nothing pulled.
ARG BASE_DOCKER=madengine-base:bookworm
FROM $BASE_DOCKER
LABEL org.opencontainers.image.title=madengine-molecule-tiny
RUN mkdir -p /workspace
WORKDIR /workspace
