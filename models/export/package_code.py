"""A published model's architecture from its PyPI package, without running the package's
__init__: CarinaNet's and CXAS's top-level modules import their whole applications (COCO tools,
SimpleITK, DICOM-SEG writers, downloaders), while their network code needs only torch and
torchvision. Each parent package is registered as an empty namespace over its installed folder,
so the relative imports inside the model code resolve and nothing else runs.

    model = module("carinanet", "carinanet.models.retinanet.model")
"""
import importlib
import importlib.util
import sys
import types
from pathlib import Path


def module(package, dotted):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"the package {package} is not installed (scripts/setup installs it into .radassist/export-venv)")
    root = Path(list(spec.submodule_search_locations)[0])
    parts = dotted.split(".")
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(root.joinpath(*parts[1:depth]))]
            sys.modules[name] = stub
    return importlib.import_module(dotted)


def data_file(package, relative):
    """A data file the package ships, by its path inside the package."""
    spec = importlib.util.find_spec(package)
    return Path(list(spec.submodule_search_locations)[0]) / relative
