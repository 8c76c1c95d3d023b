"""What every peer server does with a request: token ids in, the TorchScript encoder's embedding out.

Imported by the peer servers, which run in their own virtual environments (torch only, no tmd):
the four model inputs are built from the token ids exactly as tmd's worker builds them for one
document (tmd/worker/nlp/inputs.py: mask of ones, token types of zeros, positions 0..n-1), so
every server runs the same forward pass on the same tensors.
"""

from __future__ import annotations

import os

import torch


def load_model(path: str) -> torch.jit.ScriptModule:
    """The TorchScript encoder, on one intra-op thread (1 thread per replica, like tmd's 1x1)."""
    torch.set_num_threads(1)
    model = torch.jit.load(path).eval()
    # one call so the first request does not pay TorchScript's profiling runs
    with torch.inference_mode():
        model(*model_inputs([[1] * 64]))
    return model


def model_inputs(instances: list[list[int]]) -> tuple[torch.Tensor, ...]:
    ids = torch.tensor(instances, dtype=torch.int64)
    positions = torch.arange(ids.size(1), dtype=torch.int64).unsqueeze(0).expand_as(ids).contiguous()
    return ids, torch.ones_like(ids), torch.zeros_like(ids), positions


def embed(model: torch.jit.ScriptModule, instances: list[list[int]]) -> list[list[float]]:
    with torch.inference_mode():
        return model(*model_inputs(instances)).tolist()


def model_path() -> str:
    return os.environ["PEER_MODEL"]
