"""Start-up checks of a worker config's files, cheap enough for the Serve controller and the CLI.

``build_app`` (the controller) and ``deploy.prepare`` (``edgeserving serve``, tests, benchmarks)
run them before any replica starts, so a missing or corrupt file fails the deployment at once
with the config key, the file and the problem, instead of after Serve's replica start-up
retries. No torch and no weights are loaded here: the profile is parsed, each checkpoint's JSON
is read and checked against the profile, and with ``executor: torch`` the weights file must be
readable and match the SHA-256 its JSON records. The replica then loads everything for real
(``catalog.load_catalog``) and reports any remaining problem the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from scheduler.profile import Profile, ProfileError
from scheduler.serving.catalog import check_meta, check_models_in_profile
from scheduler.serving.config import ConfigError, ServingConfig

_CHUNK_BYTES = 1 << 20


def preflight(cfg: ServingConfig) -> Profile:
    """Raise ``ConfigError`` naming the key, the file and the problem; returns the parsed profile."""
    missing = cfg.missing_files()
    if missing:
        raise ConfigError("missing file(s): " + "; ".join(missing) + " (train and profile the zoo with "
                          "`edgeserving train` and `edgeserving profile`, or fix the paths)")
    try:
        profile = Profile.load(cfg.profile_path)
    except ProfileError as exc:
        raise ConfigError(f"profile: {exc}") from None
    check_models_in_profile(cfg, profile)
    for name, mc in cfg.models.items():
        if not mc.checkpoint:
            continue
        from models.checkpoint import metadata_path, read_meta  # JSON only: no torch work

        key = f"models.{name}.checkpoint"
        try:
            meta = read_meta(cfg.checkpoint_path(name))
        except ValueError as exc:  # CheckpointError names the file and the problem
            raise ConfigError(f"{key}: {exc}") from None
        check_meta(cfg, profile, name, meta)
        if cfg.executor == "torch":
            weights = metadata_path(cfg.checkpoint_path(name)).parent / meta.weights
            _check_weights(key, weights, meta.weights_sha256)
    return profile


def _check_weights(key: str, path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"{key}: {path}: cannot read the weights file: {exc.strerror or exc}") from None
    if sha256 and digest.hexdigest() != sha256:
        raise ConfigError(f"{key}: {path}: corrupt weights: SHA-256 differs from the one recorded in the "
                          "checkpoint's JSON (truncated, edited or replaced file)")
