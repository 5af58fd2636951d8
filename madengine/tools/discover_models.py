"""``CustomModel``: the class a MAD package's ``scripts/<dir>/get_models_json.py`` builds its models from.

MAD packages written for ROCm's madengine do::

    from madengine.tools.discover_models import CustomModel   # or madengine.utils.discover_models

    class MyModel(CustomModel):
        def update_model(self):          # optional: called only once the model is selected
            self.args = "--expensive-lookup"

    def list_models(params):             # or list_models() / list_models(**params)
        return [MyModel(name="m1", tags=["mine"], dockerfile="../../docker/base", scripts="run.sh")]

This module is imported by those scripts, so it stays tiny: no imports at all. Discovery itself lives in
:mod:`madengine.discover`; it reads a model's fields through :meth:`CustomModel.to_dict`.
"""

from __future__ import annotations

# The fields a model may carry, in upstream's positional order first (so `CustomModel("m", "docker/x")`
# keeps meaning what it meant upstream), then the fields this madengine adds.
CUSTOM_MODEL_FIELDS: tuple[str, ...] = (
    "name", "dockerfile", "dockercontext", "scripts", "url", "cred", "owner", "data", "n_gpus", "timeout",
    "training_precision", "tags", "args", "multiple_results", "skip_gpu_arch",
    "deprecated", "is_deprecated", "additional_docker_run_options",
)
_FIELD_SET = frozenset(CUSTOM_MODEL_FIELDS)


class CustomModel:
    """A model defined in Python. Keyword arguments become attributes; any extra keyword passes through.

    Only what the script sets (in the constructor, on the instance, or as a class attribute of a
    subclass) is reported by :meth:`to_dict`; everything else takes madengine's defaults. The class
    attributes below exist so that ``update_model`` can read (``self.args += ...``) a field never set.
    """

    name: str = ""
    dockerfile: str = ""
    dockercontext: str | None = None
    scripts: str = ""
    url: str = ""
    cred: str | None = None
    owner: str = ""
    data: str | None = None
    n_gpus: int | str = 1
    timeout: int | None = None
    training_precision: str = ""
    tags: list[str] | tuple[str, ...] = ()
    args: str = ""
    multiple_results: str | None = None
    skip_gpu_arch: list[str] | tuple[str, ...] = ()
    deprecated: bool = False
    additional_docker_run_options: str = ""

    def __init__(self, *args: object, **kwargs: object) -> None:
        if len(args) > 15:
            raise TypeError(f"CustomModel takes at most 15 positional arguments ({len(args)} given)")
        for key, value in zip(CUSTOM_MODEL_FIELDS[:len(args)], args, strict=True):
            if key in kwargs:
                raise TypeError(f"CustomModel got multiple values for argument {key!r}")
            kwargs[key] = value
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self) -> dict:
        """The model's fields as a plain dict (what madengine validates and turns into a Model)."""
        out: dict = {}
        # Fields a subclass sets in its class body (`class M(CustomModel): dockerfile = "..."`).
        for klass in reversed(type(self).__mro__):
            attrs = vars(klass)
            if klass is CustomModel or klass is object or _FIELD_SET.isdisjoint(attrs):
                continue
            for key, value in attrs.items():
                if key in _FIELD_SET and not callable(value) and not isinstance(value, property):
                    out[key] = value
        for key, value in vars(self).items():
            if not key.startswith("_"):
                out[key] = value
        for key in ("tags", "skip_gpu_arch"):
            if isinstance(out.get(key), (list, tuple)):
                out[key] = list(out[key])
        return out

    def update_model(self) -> None:
        """Override to fill in fields once the model is selected (cheap listing, costly details later).

        Called after tag selection and before the model is returned. Changing ``name`` or ``tags`` here
        has no effect: selection already happened.
        """

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomModel):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the upstream dataclass


__all__ = ["CUSTOM_MODEL_FIELDS", "CustomModel"]
