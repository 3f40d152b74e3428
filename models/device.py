"""Device choice and description for the executor and the profiler."""

from __future__ import annotations

import platform

import torch

DEVICE_KINDS = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The requested device is not available here."""


def pick_device(kind: str = "auto") -> torch.device:
    """``cuda`` when asked for (or on ``auto``) and present, else ``cpu``; asking for an absent GPU raises."""
    if kind not in DEVICE_KINDS and not kind.startswith("cuda:"):
        raise DeviceError(f"unknown device {kind!r}; choose one of {list(DEVICE_KINDS)} (or cuda:N)")
    if kind == "cpu":
        return torch.device("cpu")
    has_cuda = torch.cuda.is_available()
    if kind == "auto":
        return torch.device("cuda" if has_cuda else "cpu")
    if not has_cuda:
        raise DeviceError(f"device {kind!r} requested but no CUDA GPU is available on this machine "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                          f"use --device cpu or auto")
    device = torch.device(kind)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {kind!r} requested but only {torch.cuda.device_count()} GPU(s) are present")
    return device


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU model, or the CPU model with its core count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_model()}"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock measurement covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
