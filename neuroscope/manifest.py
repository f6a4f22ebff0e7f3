"""Provenance: what produced a run (DESIGN.md, "Provenance")."""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from typing import Any

import torch

from neuroscope.version import __version__
from neuroscope.registry import Registry

DEPENDENCIES = ("torch", "transformers", "tokenizers", "numpy", "pluggy", "attrs", "rich", "matplotlib",
                "huggingface-hub")


def versions() -> dict[str, str]:
    out = {"neuroscope": __version__, "python": sys.version.split()[0]}
    for name in DEPENDENCIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"requested": device, "platform": platform.platform(), "machine": platform.machine(),
                            "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def build_manifest(registry: Registry, device: str, seeds: list[int], data: dict[str, Any],
                   activations: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    return {
        "versions": versions(),
        "plugins": [p.to_json() for p in registry.plugins],
        "plugin_failures": [{"name": f.name, "error": f.error} for f in registry.failures],
        "registry_files": registry.file["_files"],
        "data": data,
        "activations": activations,
        "seeds": seeds,
        "device": device_info(device),
        "command": argv,
    }
