"""MLServer custom runtime serving the benchmark encoder (Open Inference Protocol / V2).

    mlserver start DIR    # DIR holds settings.json and model-settings.json (written by peers.py)

POST /v2/models/enc/infer {"inputs": [{"name": "input_ids", "shape": [n, 64], "datatype": "INT64",
"data": [...]}]} -> {"outputs": [{"name": "embedding", "shape": [n, 256], "datatype": "FP32", ...}]}.
With `max_batch_size` > 1 in model-settings.json MLServer's adaptive batching merges queued
requests along dimension 0 (waiting at most `max_batch_time` seconds) before `predict`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402

from common import load_model, model_inputs  # noqa: E402


class Encoder(MLModel):
    async def load(self) -> bool:
        self.model = load_model(os.environ["PEER_MODEL"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        ids = NumpyCodec.decode_input(payload.inputs[0])
        with torch.inference_mode():
            out = self.model(*model_inputs(ids.tolist())).numpy().astype(np.float32)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("embedding", out)])
