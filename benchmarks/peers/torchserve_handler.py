"""TorchServe handler for the benchmark encoder: KServe-v1 style {"instances": [[ids...]]} in,
{"predictions": [[floats...]]} out, the same tensors as tmd's worker (common.model_inputs).

BaseHandler.initialize already torch.jit.loads the archive's serialized .pt; the handler only
pins one intra-op thread and maps TorchServe's batch (one item per request here) to rows.
"""

from __future__ import annotations

import json

import torch
from ts.torch_handler.base_handler import BaseHandler

from common import model_inputs


class EncoderHandler(BaseHandler):
    def initialize(self, context) -> None:
        torch.set_num_threads(1)
        super().initialize(context)

    def preprocess(self, data):
        self.rows_per_request = []
        instances: list[list[int]] = []
        for item in data:
            body = item.get("body") if item.get("body") is not None else item.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            self.rows_per_request.append(len(body["instances"]))
            instances.extend(body["instances"])
        return instances

    def inference(self, data, *args, **kwargs):
        with torch.inference_mode():
            return self.model(*model_inputs(data))

    def postprocess(self, data):
        rows = data.tolist()
        out, start = [], 0
        for n in self.rows_per_request:
            out.append({"predictions": rows[start:start + n]})
            start += n
        return out
