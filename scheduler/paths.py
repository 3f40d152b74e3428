"""Where the project's shared inputs live: ``../shared`` beside the checkout, or $EDGESERVING_SHARED."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    env = os.environ.get("EDGESERVING_SHARED")
    return Path(env) if env else (REPO_ROOT.parent / "shared")


def seed_profile_path() -> Path:
    return shared_dir() / "profiles" / "edgeserving_resnet_cifar100.json"


def azure_llm_trace_path() -> Path:
    return shared_dir() / "traces" / "AzureLLMInferenceTrace_conv.csv"


def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else a clear error saying what is missing and where it was looked for."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path} (set EDGESERVING_SHARED to the folder holding "
                                f"profiles/ and traces/, or pass the file explicitly)")
    return path
