"""Dynamic model listing for scripts/dummy3 (the example of source 3, "dynamic").

madengine imports this file and calls list_models(params): params are the tag parameters, e.g.
`--tags dummy3:dummy_3:batch_size=512` gives {"batch_size": "512"}. Relative paths are resolved
against this folder (scripts/dummy3/). Works unchanged with ROCm's madengine import path too.
"""

from madengine.tools.discover_models import CustomModel

DEFAULT_BATCH_SIZE = "256"


class Dummy3Model(CustomModel):
    def update_model(self):
        # Called only once the model is selected: the place for costly look-ups.
        self.timeout = 300
        self.owner = "mad.support@example.com"


def list_models(params):
    batch_size = params.get("batch_size", DEFAULT_BATCH_SIZE)
    return [
        Dummy3Model(
            name="dummy_3",
            tags=["dummies", "dummy3"],
            dockerfile="../../docker/dummy",
            scripts="run.sh",
            n_gpus="1",
            training_precision="",
            args=f"--batch_size {batch_size}",
        )
    ]
