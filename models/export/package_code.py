"""A published model's architecture from its PyPI package, without running the package's
__init__ files: CarinaNet's and CXAS's package modules import their whole applications (COCO
tools, SimpleITK, DICOM-SEG writers, downloaders), while their network code needs only torch and
torchvision. Every package folder is registered as an empty namespace over its installed
folder, so the imports inside the model code resolve to the modules themselves and no
__init__ runs.

    model = module("carinanet", "carinanet.models.retinanet.model")
"""
import importlib
import importlib.util
import sys
import types
from pathlib import Path


def module(package, dotted, training_only=()):
    """The module `dotted` of `package`; `training_only`: modules the model code imports only for
    training (their names stand in, and calling anything in them says so)."""
    for name in training_only:
        stub = types.ModuleType(name)
        stub.__getattr__ = lambda attribute, name=name: _training_only(name, attribute)
        sys.modules.setdefault(name, stub)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"the package {package} is not installed (scripts/setup installs it into .radassist/export-venv)")
    root = Path(list(spec.submodule_search_locations)[0])
    # Every package folder (the top one and each below it) as an empty namespace.
    for init in sorted(root.rglob("__init__.py")):
        folder = init.parent
        name = ".".join([package, *folder.relative_to(root).parts])
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(folder)]
            sys.modules[name] = stub
    return importlib.import_module(dotted)


def _training_only(module, attribute):
    if attribute.startswith("__"):
        raise AttributeError(attribute)

    def refuse(*_args, **_kwargs):
        raise NotImplementedError(f"{module}.{attribute} is for training, which an export does not do")
    return refuse


def data_file(package, relative):
    """A data file the package ships, by its path inside the package."""
    spec = importlib.util.find_spec(package)
    return Path(list(spec.submodule_search_locations)[0]) / relative
