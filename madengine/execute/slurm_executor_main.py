"""``__main__`` of the SLURM job's executor zipapp (``python3 executor.pyz REQUEST.json``).

Runs on a SLURM node with only Python 3 and a Docker engine (``DOCKER_HOST``, else the default socket):
makes the image present (pull by digest, or ``docker load`` of a tarball in the shared directory), then
runs the request with the collection's ``run_request``, the code behind the ``mad.engine.run_model``
module, which writes the rows JSON beside the log. Standard library only. SIGTERM (``scancel``, the
job's time limit) becomes KeyboardInterrupt, on which the executor removes the running container.
"""

import json
import os
import signal
import socket
import sys

from ansible_collections.mad.engine.plugins.module_utils._engine import EngineClient, EngineError
from ansible_collections.mad.engine.plugins.module_utils._image import ensure_image, load_image
from ansible_collections.mad.engine.plugins.module_utils._request import pull_failure_reason, run_request


def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv):
    signal.signal(signal.SIGTERM, _terminate)
    with open(argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    image = request.pop("slurm_image", None) or {}
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    request["host"] = node
    request["machine_name"] = node
    engine = EngineClient(os.environ.get("DOCKER_HOST") or None)
    if not request.get("error") and image.get("name"):
        try:
            if image.get("load_from"):
                load_image(engine, image["name"], image["load_from"], image_id=image.get("id") or "")
            else:
                ensure_image(engine, image["name"], image.get("digest") or "")
        except EngineError as e:
            request["error"] = pull_failure_reason(e.reason, str(e))
    result = run_request(request, {}, engine)
    print(result["msg"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
