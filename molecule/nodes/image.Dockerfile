# The image the `nodes` scenario's prepare pushes to the test registry for the nodes to pull.
FROM madengine-base:bookworm
LABEL org.opencontainers.image.title=madengine-molecule-nodes-payload
RUN echo "pulled by molecule/nodes" >/etc/madengine-molecule-payload
