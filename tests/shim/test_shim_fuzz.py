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
from jsonschema_rs import Draft202012Validator  # noqa: E402  (a dependency of schemathesis)

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,  # noqa: E402
                                               response_schema_conformance, status_code_conformance)

from tests.operator.e2e import install_crds  # noqa: E402
from tests.shim.support import ShimProcess, ordered_parts  # noqa: E402
from tmd.api.errors import ElasticsearchError  # noqa: E402
from tmd.api.resources import resource_name  # noqa: E402
from tmd.api.units import parse_time_value  # noqa: E402
from tmd.shim import openapi  # noqa: E402
from tmd.tinymodels import super_simple  # noqa: E402
from tmd.tinymodels.builders import script_bytes  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.localkube(nodes=1, node_cpus="2", node_memory="4Gi")]

MAX_EXAMPLES = int(os.environ.get("TMD_FUZZ_EXAMPLES", "30"))  # per operation; more for a longer local hunt
SEED = int(os.environ.get("TMD_FUZZ_SEED", "20261122"))
VOCAB = ["[PAD]", "[UNK]", "these", "are", "my", "words"]
DEFINED, BARE, ALIAS, DEPLOYED = "test_model", "bare_model", "test_alias", "seeded_deployment"
START_WAIT_CAP = 1.0
ERROR_BODY = Draft202012Validator(openapi.ERROR)

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
    "phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "stateful": {"enabled": False},
               "coverage": {"enabled": os.environ.get("TMD_FUZZ_COVERAGE") == "1"}},
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
        started = client.post(f"/_ml/trained_models/{DEFINED}/deployment/_start",
                              params={"deployment_id": DEPLOYED, "wait_for": "starting"})
        assert started.status_code == 200, started.text


# Path parameters that name things that exist, so the fuzzer gets past the 404s.
EXISTING: dict[str, list[str]] = {
    "model_id": [DEFINED, DEFINED, DEFINED, ALIAS, BARE, DEPLOYED, DEPLOYED, "_all", "*", f"{DEFINED},{BARE}", "test_*",
                 "fuzz_model", "fuzz_deployment"],
    "model_alias": [ALIAS, "other_alias"], "part": ["0", "1", "-1", "10000"],
    "name": [resource_name(DEFINED), resource_name(BARE)],
    "filename": ["model.pt", "vocabulary.json", "definition.json", "parts"],
    "node_id": ["_all", "*", "node-1", "missing"], "inference_id": ["fuzz-endpoint", "_all", DEFINED],
    "task_type": ["text_embedding", "sparse_embedding", "rerank", "completion"],
}

# Values that parse, swapped in for the steered cases, so that starts get past parameter parsing.
REALISTIC: dict[str, list[Any]] = {
    "timeout": ["1s", "500ms", "0", "-1"], "master_timeout": ["1s"], "cache_size": ["0", "10kb", "1mb"],
    "deployment_id": ["fuzz_deployment", "fuzz_deployment_2", "fuzz_deployment_3", "fuzz_deployment_4", DEFINED, BARE],
    "number_of_allocations": [1, 2], "threads_per_allocation": [1, 2], "queue_capacity": [1, 1024],
    "model_threads": [1], "inference_threads": [1], "model_type": ["pytorch"], "tags": [[], ["fuzz"]],
    "service": ["elasticsearch"], "input": [["these are my words"], "words"],
    "service_settings": [{"model_id": DEFINED, "num_allocations": 1, "num_threads": 1}, {"model_id": BARE}],
}

REQUIRED = {"inference_config", "docs", "definition", "total_definition_length", "total_parts", "vocabulary",
            "service", "service_settings", "input"}

# The description the shim serves (test_openapi.py checks that it serves exactly this one).
schema = schemathesis.openapi.from_dict(openapi.build("9.1.0", auth=False), config=CONFIG)


def _bound_waits(case: Any) -> None:
    """Cap a start's wait (query or body `timeout`, default 30s) at START_WAIT_CAP: no operator runs.
    Creating an inference endpoint starts a deployment too."""
    if not (case.path.endswith("/deployment/_start")
            or (case.method.upper() == "PUT" and case.path.startswith(openapi.I) and not case.path.endswith("_update"))):
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


def _realistic(values: Any, *, put_model: bool = False) -> Any:
    if not isinstance(values, dict):
        return st.just(values)
    fields = {k: st.sampled_from(REALISTIC[k]) if k in REALISTIC else st.just(v) for k, v in values.items()
              if k in REALISTIC or k in REQUIRED}
    optional = {k: st.just(v) for k, v in values.items() if k not in fields and k != "model_id"}
    if put_model:
        fields.setdefault("model_type", st.just("pytorch"))
    # other fields each kept or dropped, or all dropped
    return st.one_of(st.fixed_dictionaries(fields, optional=optional), st.fixed_dictionaries(fields))


def _steered(case: Any) -> Any:
    """The case with path parameters naming things that exist and query/body values that parse.
    Later cases need the defined model, its alias and the seeded deployment: a model DELETE or a
    stop never names them (nor `_all`); a start always names the defined model."""
    path = case.path_parameters or {}
    keep = {(k, v) for k in ("model_id",) for v in (DEFINED, ALIAS, DEPLOYED, "_all", "*")} \
        if case.method.upper() == "DELETE" and case.path == openapi.M + "/{model_id}" \
        or case.path.endswith("/deployment/_stop") else set()
    named = {k: [DEFINED] if k == "model_id" and case.path.endswith("/deployment/_start")
             else [v for v in EXISTING.get(k, []) if (k, v) not in keep] for k in path}
    put_model = case.method.upper() == "PUT" and case.path == openapi.M + "/{model_id}"

    def apply(parts: dict[str, Any]) -> Any:
        # Assigning a part marks it for revalidation; an absent body would then count as invalid.
        for name, value in (("path_parameters", parts["path"]), ("query", parts["query"]), ("body", parts["body"])):
            if value and value != getattr(case, name):
                setattr(case, name, value)
        return case

    return st.fixed_dictionaries({
        "path": st.fixed_dictionaries({k: st.sampled_from(v) if v else st.just(path[k]) for k, v in named.items()}),
        "query": _realistic(case.query), "body": _realistic(case.body, put_model=put_model),
    }).map(apply)


@schema.hook
def filter_query(context: Any, query: Any) -> bool:
    """A parameter whose value is an empty list is not sent at all, so a case made invalid only by
    one would arrive valid and be reported as "invalid data accepted": leave those out."""
    return not any(value == [] for value in (query or {}).values())


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Two thirds of the valid cases are steered past the 404s and parse errors, to reach what lies behind."""
    if case.meta is None or case.meta.generation.mode != schemathesis.GenerationMode.POSITIVE:
        return st.just(case)
    return st.sampled_from([False, True, True]).flatmap(lambda steer: _steered(case) if steer else st.just(case))


ANSWERS: collections.Counter[tuple[str, int]] = collections.Counter()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@schema.parametrize()
def test_fuzz_shim_api(case, shim):
    _bound_waits(case)
    response = case.call_and_validate(checks=[*CHECKS, es_error_shape], base_url=shim.url, timeout=30)
    ANSWERS[(f"{case.method.upper()} {case.path}", response.status_code)] += 1
    if os.environ.get("TMD_FUZZ_REASONS") and response.status_code >= 400 and case.method.upper() != "HEAD":
        print("REASON", case.method.upper(), case.path, response.status_code,
              json.loads(response.content)["error"]["reason"][:150])


def test_every_operation_was_fuzzed(shim):
    """Runs after the fuzzing (file order): every described operation got requests, and what they got
    is printed (`-s`) as the record of the run."""
    by_status: collections.Counter[int] = collections.Counter()
    for (_, status), n in ANSWERS.items():
        by_status[status] += n
    operations = {op for op, _ in ANSWERS}
    print(f"\nfuzzed {sum(ANSWERS.values())} requests over {len(operations)} operations: "
          f"{dict(sorted(by_status.items()))}")
    for (op, status), n in sorted(ANSWERS.items()):
        print(f"  {op} -> {status}: {n}")
    described = {f"{method.upper()} {path}" for path, ops in schema.raw_schema["paths"].items() for method in ops}
    assert described <= operations  # (the coverage phase also sends undocumented methods: 405)
    assert all(status < 500 for status in by_status)
