"""Fuzz the shim's HTTP API from its own OpenAPI description (issue #7, "bad input").

schemathesis generates requests for every operation of `GET /_tmd/openapi.json`, valid and
invalid against the description, and sends them to `tmd shim` running as a subprocess against
real localkube. Every answer must be: no 5xx, a documented status and content type, a 2xx body
that matches the description, every other body Elasticsearch's error shape with `status` equal
to the HTTP status, `X-elastic-product` on all of them; and the shim process must still be up and
must not have logged an unexpected exception.

No operator runs: a start that gets through validation creates a TrainedModelDeployment that
stays `starting`, so the shim answers what Elasticsearch answers for such a deployment (408 after
`timeout` for wait_for=started, the assignment for wait_for=starting, 409 on infer). Waiting is not
what is fuzzed, so start timeouts are capped at 1s (`_bound_waits`); starting real workers for
hundreds of generated starts would take minutes and test the operator, which has its own tests.
"""

from __future__ import annotations

import base64
import collections
import json
import os
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis>=4 (test extra) fuzzes the shim")
from hypothesis import strategies as st  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

from tests.operator.e2e import install_crds  # noqa: E402
from tests.shim.support import ShimProcess, ordered_parts  # noqa: E402
from tmd.api.errors import ElasticsearchError  # noqa: E402
from tmd.api.resources import resource_name  # noqa: E402
from tmd.api.units import parse_time_value  # noqa: E402
from tmd.shim import openapi  # noqa: E402
from tmd.tinymodels import super_simple  # noqa: E402
from tmd.tinymodels.builders import script_bytes  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=1, node_cpus="2", node_memory="4Gi")]

MAX_EXAMPLES = int(os.environ.get("TMD_FUZZ_EXAMPLES", "12"))  # per operation; more for a longer local hunt
SEED = 20261122
VOCAB = ["[PAD]", "[UNK]", "these", "are", "my", "words"]
DEFINED, BARE, ALIAS = "test_model", "bare_model", "test_alias"
START_WAIT_CAP = 1.0
ERROR_BODY = Draft202012Validator(openapi.ERROR)

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": os.environ.get("TMD_FUZZ_COVERAGE") == "1"}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": False}},
})


@pytest.fixture(scope="module")
def shim(localkube, kube, tmp_path_factory):
    install_crds(kube)
    work = tmp_path_factory.mktemp("shim-fuzz")
    proc = ShimProcess(localkube.kubeconfig, work / "store", work / "shim.log", "--no-auth").start()
    _seed(proc.url)
    yield proc
    alive = proc.proc is not None and proc.proc.poll() is None
    log = proc.output()
    code = proc.stop() if alive else proc.proc.returncode
    assert alive, "the shim process died during fuzzing:\n" + log[-3000:]
    assert code == 0, log[-3000:]
    assert "unexpected error" not in log and "Traceback" not in log, log[-5000:]


def _seed(url: str) -> None:
    """A fully defined model with an alias, and a model without definition, for ids that exist."""
    tiny = super_simple(DEFINED, vocabulary=VOCAB)
    definition = script_bytes(tiny.model)
    with httpx.Client(base_url=url, timeout=30) as client:
        for model_id in (DEFINED, BARE):
            body = {k: v for k, v in tiny.config.items() if k != "model_id"}
            assert client.put(f"/_ml/trained_models/{model_id}", json=body).status_code == 200
        for part, chunk in ordered_parts(definition, 2):
            response = client.put(f"/_ml/trained_models/{DEFINED}/definition/{part}", json={
                "definition": base64.b64encode(chunk).decode(), "total_definition_length": len(definition),
                "total_parts": 2})
            assert response.status_code == 200, response.text
        assert client.put(f"/_ml/trained_models/{DEFINED}/vocabulary", json={"vocabulary": VOCAB}).status_code == 200
        assert client.put(f"/_ml/trained_models/{DEFINED}/model_aliases/{ALIAS}").status_code == 200


# Path parameters that name things that exist, so the fuzzer gets past the 404s.
EXISTING: dict[str, list[str]] = {
    "model_id": [DEFINED, BARE, ALIAS, "_all", "*", f"{DEFINED},{BARE}", "test_*"],
    "model_alias": [ALIAS, "other_alias"], "part": ["0", "1", "-1", "10000"],
    "name": [resource_name(DEFINED), resource_name(BARE)],
    "filename": ["model.pt", "vocabulary.json", "definition.json", "parts"],
}

# The description the shim serves (test_openapi.py checks that it serves exactly this one).
schema = schemathesis.openapi.from_dict(openapi.build("9.1.0", auth=False), config=CONFIG)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the cases keep the generated path parameters, half name existing things (but a
    DELETE never removes the defined model or its alias, which later cases need)."""
    if not path_parameters:
        return st.just(path_parameters)
    operation = context.operation
    deleting = operation is not None and operation.method.upper() == "DELETE" and \
        operation.path == openapi.M + "/{model_id}"
    named = {k: [v for v in EXISTING.get(k, []) if not (deleting and v in (DEFINED, ALIAS))]
             for k in path_parameters}
    return st.one_of(st.just(path_parameters), st.fixed_dictionaries(
        {k: st.sampled_from(v) if v else st.just(path_parameters[k]) for k, v in named.items()}))


def _bound_waits(case: Any) -> None:
    """Cap a start's wait (query or body `timeout`, default 30s) at START_WAIT_CAP: no operator runs."""
    if not case.path.endswith("/deployment/_start"):
        return
    query = case.query if isinstance(case.query, dict) else {}
    body = case.body if isinstance(case.body, dict) else {}
    for where in (query, body):
        if "timeout" in where:
            try:
                seconds = parse_time_value(where["timeout"], "timeout").seconds
            except (ElasticsearchError, TypeError):
                continue
            if seconds is None or seconds > START_WAIT_CAP:
                where["timeout"] = f"{START_WAIT_CAP:g}s"
    if "timeout" not in query and "timeout" not in body:
        case.query = {**query, "timeout": f"{START_WAIT_CAP:g}s"}


def es_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer carries the product header; every non-2xx is an Elasticsearch error body."""
    assert response.headers.get("x-elastic-product") == ["Elasticsearch"], response.headers
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    body = json.loads(response.content)
    errors = sorted(e.message for e in ERROR_BODY.iter_errors(body))
    assert not errors, f"{response.status_code} body not in Elasticsearch's error shape: {errors}: {body}"
    assert body["status"] == response.status_code, body
    return True


ANSWERS: collections.Counter[tuple[str, int]] = collections.Counter()


@schema.parametrize()
def test_fuzz_shim_api(case, shim):
    _bound_waits(case)
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                                   response_schema_conformance, status_code_conformance)
    response = case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance, negative_data_rejection, es_error_shape],
                           base_url=shim.url, timeout=30)
    ANSWERS[(f"{case.method.upper()} {case.path}", response.status_code)] += 1


def test_fuzz_summary(shim):
    """What the fuzzing above sent and got (printed with -s; runs after it in file order)."""
    total = sum(ANSWERS.values())
    by_status = collections.Counter()
    for (_, status), n in ANSWERS.items():
        by_status[status] += n
    print(f"\nfuzzed {total} requests over {len({op for op, _ in ANSWERS})} operations: {dict(sorted(by_status.items()))}")
    for (op, status), n in sorted(ANSWERS.items()):
        print(f"  {op} -> {status}: {n}")
