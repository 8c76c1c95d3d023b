"""PyTriton (NVIDIA Triton Inference Server driving a Python function) serving the benchmark encoder.

    PEER_MODEL=model.pt PEER_HTTP_PORT=P PEER_GRPC_PORT=G PEER_METRICS_PORT=M PEER_BATCH_SIZE=B \
        PEER_BATCH_DELAY_US=D PEER_REPLICAS=N python pytriton_server.py

POST /v2/models/enc/infer {"inputs": [{"name": "input_ids", "shape": [n, 64], "datatype": "INT64",
"data": [...]}]} -> {"outputs": [{"name": "embedding", ...}]}. Triton's dynamic batcher gathers
up to B requests (waiting at most D µs) into one call of `infer`, on N model instances.
Triton binds the addresses given here (127.0.0.1); the benchmark also runs in a private network
namespace.

Triton runs the Python model in its python-backend stub, an executable linked against
libpython3.X.so.1.0 that takes its standard library from this virtual environment's base
interpreter. The dynamic loader would give the stub whichever libpython3.X.so.1.0 its default
path holds (here Debian's 3.11.2 under a pyenv 3.11.7 stdlib, whose multiprocessing calls
RLock._recursion_count, which 3.11.2 lacks), so the stub is pointed at this interpreter's own
shared libpython instead (`libpython_dir`).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402

from common import load_model, model_inputs  # noqa: E402


def libpython_dir() -> str:
    """The directory of this interpreter's shared libpython, which Triton's stub must load to match its stdlib."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not (sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and soname and (Path(libdir) / soname).is_file()):
        raise SystemExit(f"{sys.executable} (Python {sys.version.split()[0]}) has no shared libpython ({soname} in "
                         f"{libdir}): Triton's Python backend stub links one and would load another Python's; create "
                         "this environment from a Python built with --enable-shared")
    return libdir


def main() -> int:
    # Triton (and its stub) inherit this process's environment when PyTriton starts them
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libpython_dir(), os.environ.get("LD_LIBRARY_PATH")) if p)
    model = load_model(os.environ["PEER_MODEL"])

    @batch
    def infer(input_ids: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {"embedding": model(*model_inputs(input_ids.tolist())).numpy().astype(np.float32)}

    config = TritonConfig(http_address="127.0.0.1", http_port=int(os.environ["PEER_HTTP_PORT"]),
                          grpc_address="127.0.0.1", grpc_port=int(os.environ["PEER_GRPC_PORT"]),
                          metrics_port=int(os.environ["PEER_METRICS_PORT"]), allow_metrics=False)
    replicas = int(os.environ.get("PEER_REPLICAS", "1"))
    with Triton(config=config) as triton:
        triton.bind(model_name="enc", infer_func=[infer] * replicas,
                    inputs=[Tensor(name="input_ids", dtype=np.int64, shape=(-1,))],
                    outputs=[Tensor(name="embedding", dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=int(os.environ.get("PEER_BATCH_SIZE", "16")),
                                       batcher=DynamicBatcher(
                                           max_queue_delay_microseconds=int(os.environ.get("PEER_BATCH_DELAY_US", "5000")))),
                    strict=False)
        triton.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
