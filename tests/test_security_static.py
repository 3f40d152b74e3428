"""Security properties that need no running server (SECURITY.md has the threat model).

- No code path can unpickle data: the project never imports a pickle-based loader, every
  ``torch.load`` passes ``weights_only=True``, ``np.load`` never allows pickles, YAML is read with
  ``safe_load``, nothing calls ``eval``/``exec``; and a checkpoint whose weights are a malicious
  pickle (with a matching checksum) is refused without running it.
- Loopback by default: the shipped Serve config, ``deploy.prepare`` and ``edgeserving serve`` bind
  127.0.0.1 unless told otherwise, and the embedded Ray binds its own servers to loopback.
- The body limit is enforced while reading: an endless chunked body is cut off just past
  ``max_payload_bytes`` (memory stays bounded), before it is ever parsed.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import json
import pickle
import shutil
from pathlib import Path

import pytest

from scheduler.paths import REPO_ROOT

PACKAGES = ("scheduler", "models", "workloads", "bench")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib", "jsonpickle"}


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py"))


def _call_name(node: ast.Call) -> str:
    parts = []
    f = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def unsafe_loads(source: str, where: str) -> list[str]:
    """Every construct in ``source`` that could deserialize code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in PICKLE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        builtin = isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec")  # not model.eval()
        if builtin or name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}:{node.lineno}: calls {name}")
        if name.endswith("torch.load"):
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            flag = _keyword(node, "allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}:{node.lineno}: np.load may allow pickles")
    return found


def test_the_scanner_catches_each_unsafe_load():
    bad = ("import pickle\nfrom dill import loads\nimport torch, numpy as np, yaml\n"
           "torch.load('w.pt')\ntorch.load('w.pt', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
           "yaml.load(s)\neval('1')\nmodel.eval()\n")
    assert len(unsafe_loads(bad, "x.py")) == 7
    good = "import torch, yaml, numpy as np\ntorch.load(p, weights_only=True)\nyaml.safe_load(s)\nnp.load(p)\n"
    assert unsafe_loads(good, "y.py") == []


def test_no_code_path_can_unpickle_data():
    found = [f for p in project_files() for f in unsafe_loads(p.read_text(), str(p.relative_to(REPO_ROOT)))]
    assert not found, found
    assert any("weights_only=True" in p.read_text() for p in project_files())  # the one checkpoint loader


def test_a_malicious_pickle_with_a_matching_checksum_is_refused_and_never_runs(tmp_path):
    from models.checkpoint import CheckpointError, load_checkpoint

    src = REPO_ROOT / "models" / "zoo_artifacts" / "cnn1d_mnist1d.json"
    if not src.exists():
        pytest.skip("the committed demo zoo is not present")
    shutil.copy(src, tmp_path / src.name)
    marker = tmp_path / "pwned"
    weights = tmp_path / "cnn1d_mnist1d.pt"
    weights.write_bytes(pickle.dumps(_Exploit(marker)))
    meta = json.loads(src.read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / src.name).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="corrupt weights, not a state_dict"):
        load_checkpoint(tmp_path / src.name)
    assert not marker.exists()


class _Exploit:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_the_api_binds_loopback_unless_told_otherwise():
    from scheduler.cli_serve import add_arguments
    from scheduler.serving import deploy

    raw = deploy.load_serve_config()
    assert raw["http_options"]["host"] == "127.0.0.1"
    assert deploy.prepare(raw)["http_options"]["host"] == "127.0.0.1"
    assert deploy.prepare(raw, host="0.0.0.0")["http_options"]["host"] == "0.0.0.0"  # explicit only
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).host is None  # the config's host, loopback as shipped
    assert inspect.signature(deploy.start_ray).parameters["node_ip_address"].default == "127.0.0.1"


def test_the_body_limit_is_enforced_while_reading_an_endless_stream():
    from starlette.requests import Request

    from scheduler.serving.api import read_body
    from scheduler.serving.validation import InputError

    chunk = b"x" * 4096
    sent = {"n": 0}

    async def receive():  # a chunked upload that never ends
        sent["n"] += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/v1/infer"}, receive)
    with pytest.raises(InputError) as info:
        asyncio.run(read_body(request, limit=64 * 1024, timeout_s=5.0))
    assert info.value.status == 413 and info.value.code == "payload_too_large"
    assert sent["n"] == 64 * 1024 // 4096 + 1  # stopped one chunk past the limit

    declared = Request({"type": "http", "method": "POST", "path": "/v1/infer",
                        "headers": [(b"content-length", b"99999999")]}, receive)
    sent["n"] = 0
    with pytest.raises(InputError, match="99999999 bytes exceeds the limit"):
        asyncio.run(read_body(declared, limit=64 * 1024, timeout_s=5.0))
    assert sent["n"] == 0  # refused on the declared length, before reading anything


def test_a_body_that_stops_arriving_is_refused_after_the_body_timeout():
    """A client that sends part of its body and stalls, or a call re-sent by Serve without its body,
    is answered 408 after the bound instead of holding the handler until the client gives up."""
    from starlette.requests import Request

    from scheduler.serving.api import read_body
    from scheduler.serving.validation import InputError

    parts = [{"type": "http.request", "body": b'{"model": ', "more_body": True}]

    async def receive():  # the first part, then nothing more: the rest never comes
        if parts:
            return parts.pop()
        await asyncio.Event().wait()

    request = Request({"type": "http", "method": "POST", "path": "/v1/infer",
                       "headers": [(b"content-length", b"200")]}, receive)
    with pytest.raises(InputError) as info:
        asyncio.run(read_body(request, limit=64 * 1024, timeout_s=0.05))
    assert (info.value.status, info.value.code) == (408, "body_timeout")
    assert "within 50 ms" in info.value.message and "(10 bytes arrived)" in info.value.message

    whole = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive_all():
        return whole.pop()

    done = Request({"type": "http", "method": "POST", "path": "/v1/infer", "headers": []}, receive_all)
    assert asyncio.run(read_body(done, limit=64 * 1024, timeout_s=0.05)) == b"{}"  # a prompt body passes
