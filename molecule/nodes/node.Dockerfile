# A molecule `nodes` instance: Debian bookworm with python3 (the local base image; nothing is pulled).
# The mad.engine modules need only Python's standard library on a target; they reach the Docker engine
# through the socket the scenario mounts at /var/run/docker.sock.
# Built by tests/infra/ansible_deps.sh as madengine-molecule-node:bookworm.
FROM madengine-base:bookworm
LABEL org.opencontainers.image.title=madengine-molecule-node
RUN python3 -c "import http.client, json, socket" && mkdir -p /var/lib/madengine
CMD ["sleep", "infinity"]
