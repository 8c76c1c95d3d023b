import hashlib
import http.server
import json
import threading

import pytest

from tmd.worker.fetch import Artifact, FetchError, fetch, materialize_model_dir


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_uri_is_copied_and_verified(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"torchscript bytes")
    out = fetch(Artifact(src.as_uri(), _sha(b"torchscript bytes"), 17), tmp_path / "out" / "model.pt")
    assert out.read_bytes() == b"torchscript bytes"


@pytest.mark.parametrize("artifact_kw, message", [
    ({"sha256": "0" * 64}, "has sha256"),
    ({"length": 3}, "has 17 bytes, expected 3"),
])
def test_mismatch_is_refused_and_leaves_nothing(tmp_path, artifact_kw, message):
    src = tmp_path / "src.bin"
    src.write_bytes(b"torchscript bytes")
    dest = tmp_path / "out" / "model.pt"
    with pytest.raises(FetchError, match=message):
        fetch(Artifact(src.as_uri(), **artifact_kw), dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(FetchError, match="cannot read"):
        fetch(Artifact((tmp_path / "nope").as_uri()), tmp_path / "x")
    with pytest.raises(FetchError, match="unsupported URI scheme"):
        fetch(Artifact("s3://bucket/model.pt"), tmp_path / "x")


def test_http_uri(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"abc")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert fetch(Artifact(f"{base}/model.pt", _sha(b"abc")), tmp_path / "d" / "m").read_bytes() == b"abc"
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch(Artifact(f"{base}/missing"), tmp_path / "d" / "n")
    finally:
        server.shutdown()


def test_materialize_writes_the_model_dir_layout(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"m")
    (tmp_path / "v.json").write_text(json.dumps({"vocabulary": ["[PAD]"]}))
    d = materialize_model_dir(tmp_path / "dir", {"model_id": "x"}, Artifact((tmp_path / "m.pt").as_uri()),
                              Artifact((tmp_path / "v.json").as_uri()))
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.pt", "vocabulary.json"]
    assert json.loads((d / "config.json").read_text()) == {"model_id": "x"}
