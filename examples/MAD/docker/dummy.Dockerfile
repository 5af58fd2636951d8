# The example MAD package's one image: the local CPU base image, nothing pulled from a registry.
# No "# CONTEXT" header, so it matches any host (GPU vendor and guest OS alike).
ARG BASE_DOCKER=madengine-base:bookworm
FROM $BASE_DOCKER

ENV MAD_EXAMPLE=1
RUN mkdir -p /workspace && echo "madengine example image" > /workspace/README.txt
WORKDIR /workspace
