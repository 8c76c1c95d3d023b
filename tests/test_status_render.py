from tmd.status import render


def test_status_table_shows_each_deployment_and_node():
    stats = {"count": 1, "trained_model_stats": [
        {"model_id": "demo_ner", "deployment_stats": {
            "deployment_id": "demo_ner", "state": "started", "number_of_allocations": 2,
            "allocation_status": {"allocation_count": 2, "target_allocation_count": 2, "state": "fully_allocated"},
            "nodes": [
                {"node": {"node-1": {"name": "node-1"}}, "routing_state": {"routing_state": "started"},
                 "inference_count": 12, "throughput_last_minute": 5, "average_inference_time_ms": 1.25,
                 "number_of_pending_requests": 0},
                {"node": {"node-2": {"name": "node-2"}}, "routing_state": {"routing_state": "starting"}},
            ]}},
        {"model_id": "undeployed"},
    ]}
    text = render(stats).splitlines()
    assert text[0].split()[:4] == ["DEPLOYMENT", "MODEL", "STATE", "ALLOC"]
    assert text[1].split() == ["demo_ner", "demo_ner", "started", "2/2", "node-1", "started", "12", "5", "1.2", "0"]
    assert text[2].split() == ["node-2", "starting", "0", "0", "-", "0"]
    assert len(text) == 3


def test_status_table_says_when_nothing_is_deployed():
    assert render({"trained_model_stats": []}).splitlines()[1] == "(no deployments)"
