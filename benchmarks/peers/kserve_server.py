"""KServe's Python ModelServer serving the benchmark encoder on 127.0.0.1.

    PEER_MODEL=model.pt python kserve_server.py --http_port P --workers N --enable_grpc false

POST /v1/models/enc:predict {"instances": [[ids...]]} -> {"predictions": [[floats...]]}.
KServe 0.21 hard-codes uvicorn's host to 0.0.0.0 (kserve/protocol/rest/server.py) with no
option to change it, so uvicorn.Config is narrowed to 127.0.0.1 for KServe's REST server here
(the benchmark also runs every peer in a private network namespace). `predict` is synchronous:
KServe calls it on its event loop, which is how a plain KServe predictor runs.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kserve  # noqa: E402
import kserve.protocol.rest.server as rest_server  # noqa: E402
import uvicorn  # noqa: E402

from common import embed, load_model, model_path  # noqa: E402


class _LoopbackConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


class _Uvicorn:
    """uvicorn as KServe's REST server module sees it, with Config bound to loopback."""

    Config = _LoopbackConfig

    def __getattr__(self, name: str):
        return getattr(uvicorn, name)


rest_server.uvicorn = _Uvicorn()


class Encoder(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = load_model(self.path)
        self.ready = True
        return self.ready

    # ModelServer(workers>1) pickles the model into each uvicorn worker: TorchScript cannot be
    # pickled, so the worker reloads it from the file.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    def predict(self, payload: dict, headers: dict | None = None) -> dict:
        return {"predictions": embed(self.model, payload["instances"])}


if __name__ == "__main__":
    kserve.ModelServer().start([Encoder("enc", model_path())])
