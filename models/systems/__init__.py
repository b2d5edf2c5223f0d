"""Importing this package registers every system that is importable."""
import importlib

for _name in ("sfs", "diffmotion", "toy"):
    try:
        importlib.import_module(f"models.systems.{_name}")
    except ModuleNotFoundError as _err:  # a system whose module is not written yet
        if _err.name != f"models.systems.{_name}":
            raise
