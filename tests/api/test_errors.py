from tmd.api.errors import RejectedExecution, ResourceNotFound, StatusException, ValidationFailed


def test_error_body_has_elasticsearch_shape():
    body = ResourceNotFound("No known model deployment with id [x]").body()
    assert body == {
        "error": {
            "root_cause": [{"type": "resource_not_found_exception", "reason": "No known model deployment with id [x]"}],
            "type": "resource_not_found_exception",
            "reason": "No known model deployment with id [x]",
        },
        "status": 404,
    }


def test_validation_failures_are_numbered_and_joined():
    err = ValidationFailed(["a", "b"])
    assert err.reason == "Validation Failed: 1: a;2: b;"
    assert err.status == 400 and err.type == "action_request_validation_exception"


def test_status_exception_carries_its_status():
    assert StatusException("timeout [10s] waiting for inference result", 408).body()["status"] == 408
    assert RejectedExecution("inference process queue is full. Unable to execute command").status == 429
