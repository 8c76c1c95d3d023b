"""Starting a worker with something wrong: a clear one-line reason, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.worker.conftest import spawn_worker
from tmd.tinymodels import super_simple


def run_to_exit(*runs: tuple) -> list[tuple[int, str]]:
    """Start every (model_dir, args, env) worker at once, then collect (exit code, output) of each."""
    workers = [spawn_worker(model_dir, *args, env=env) for model_dir, args, env in runs]
    results = []
    try:
        for worker in workers:
            try:
                code = worker.proc.wait(90)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker kept running:\n{worker.log()}") from None
            results.append((code, worker.log()))
    finally:
        for worker in workers:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
    return results


@pytest.fixture(scope="module")
def broken_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    good = super_simple()
    corrupt = good.write(root / "corrupt")
    (corrupt / "model.pt").write_bytes(b"this is not a TorchScript archive")
    no_model = good.write(root / "no_model")
    (no_model / "model.pt").unlink()
    bad_config = good.write(root / "bad_config")
    (bad_config / "config.json").write_text("{not json")
    wrong_task = good.write(root / "wrong_task")
    config = json.loads((wrong_task / "config.json").read_text())
    config["inference_config"] = {"no_such_task": {}}
    (wrong_task / "config.json").write_text(json.dumps(config))
    return {"corrupt": corrupt, "no_model": no_model, "bad_config": bad_config, "wrong_task": wrong_task,
            "missing": root / "does-not-exist"}


@pytest.fixture(scope="module")
def outcomes(broken_dirs) -> dict[str, tuple[int, str]]:
    """Workers that get as far as loading (each imports torch): started together, slow on 2 cores."""
    names = sorted(n for n in broken_dirs if n != "missing")
    return dict(zip(names, run_to_exit(*((broken_dirs[n], (), None) for n in names))))


@pytest.mark.slow
@pytest.mark.parametrize("name, message", [
    ("corrupt", "model definition is not a TorchScript model"),
    ("no_model", "model definition not found"),
    ("bad_config", "model configuration is not valid JSON"),
    ("wrong_task", "model configuration is not usable"),
])
def test_unusable_model_dir_exits_with_reason(outcomes, name, message) -> None:
    code, log = outcomes[name]
    assert code == 1, log
    assert f"tmd worker: error: {message}" in log
    assert "Traceback" not in log


def test_mistakes_caught_before_loading(broken_dirs) -> None:
    """Bad settings exit 2 and a missing directory exits 1, both before torch is imported."""
    (code, log), (code2, log2), (code3, log3) = run_to_exit(
        (broken_dirs["corrupt"], ("--allocations", "zero"), None),
        (broken_dirs["corrupt"], (), {"TMD_CACHE_SIZE": "lots"}),
        (broken_dirs["missing"], (), None))
    assert code == 2 and "tmd worker: error: [number_of_allocations] must be an integer, got [zero]" in log
    assert code2 == 2 and "failed to parse setting [cache_size] with value [lots]" in log2
    assert code3 == 1 and f"tmd worker: error: model directory not found: {broken_dirs['missing']}" in log3
    assert all("Traceback" not in text for text in (log, log2, log3))


def test_model_by_uri_is_fetched_served_and_removed(tmp_path) -> None:
    """In a pod: no model directory, the model comes by URI (TMD_DEFINITION_URI...) and is cleaned up."""
    import hashlib

    import httpx

    source = super_simple().write(tmp_path / "source")
    work = tmp_path / "work"
    work.mkdir()
    definition = (source / "model.pt").read_bytes()
    env = {"TMD_DEFINITION_URI": (source / "model.pt").as_uri(),
           "TMD_DEFINITION_SHA256": hashlib.sha256(definition).hexdigest(),
           "TMD_VOCABULARY_URI": (source / "vocabulary.json").as_uri(),
           "TMD_MODEL_CONFIG": (source / "config.json").read_text(),
           "TMD_DEPLOYMENT_ID": "by_uri", "TMD_WORK_DIR": str(work)}
    worker = spawn_worker(None, env=env)
    try:
        worker.wait_ready()
        assert [p.name for p in work.iterdir()] and all(p.name.startswith("tmd-model-by_uri-") for p in work.iterdir())
        r = httpx.post(f"{worker.url}/infer", json={"docs": [{"input": "words"}]}, timeout=30)
        assert r.json() == {"inference_results": [{"predicted_value": [[1.0, 1.0]]}]}
        assert worker.stats()["deployment"]["deployment_id"] == "by_uri"
        assert worker.stop() == 0
        assert list(work.iterdir()) == []
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
