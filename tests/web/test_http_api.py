"""The HTTP/JSON API against the real gateway: the same jobs, keys, validation and event ids as gRPC."""

from __future__ import annotations

import io
import threading

import grpc
import pytest
import requests
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from atelier.v1 import generation_pb2, generation_pb2_grpc
from services.gateway import metrics
from services.gateway.web.transcode import to_json
from tests.web.conftest import CALL_SECONDS, Api, parse_sse


def submit(api: Api, **fields) -> dict:
    response = api.post("/v1/jobs", {"prompt": "a red apple"} | fields)
    assert response.status_code == 200, response.text
    return response.json()


def violations(response: requests.Response) -> dict[str, str]:
    error = response.json()["error"]
    return {v["field"]: v["description"] for d in error["details"] for v in d.get("fieldViolations", [])}


def test_a_job_submitted_over_http_runs_and_its_events_and_images_come_back(alice):
    handle = submit(alice, seeds=["9", "3"])
    assert handle["state"] == "JOB_STATE_QUEUED" and handle["seeds"] == ["9", "3"]
    events = alice.events(handle["jobId"])
    names = [name for _, name, _ in events]
    assert names[0] == "queued" and names[-1] == "finished"
    artifacts = [data["artifact"] for _, name, data in events if name == "artifact"]
    assert [(a["index"], a["seed"]) for a in artifacts] == [(0, "9"), (1, "3")]
    finished = events[-1][2]["finished"]
    assert finished["state"] == "JOB_STATE_SUCCEEDED"

    job = alice.get(f"/v1/jobs/{handle['jobId']}").json()
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["imagesDone"] == 2
    assert job["lastEventId"] == events[-1][0]

    download = alice.get(f"/v1/jobs/{handle['jobId']}/artifacts/1")
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert f"{handle['jobId']}-1-seed3.png" in download.headers["content-disposition"]
    assert Image.open(io.BytesIO(download.content)).format == "PNG"


def test_events_resume_after_last_event_id_with_the_ids_grpc_watch_gives(web, alice):
    handle = submit(alice, count=2)
    events = alice.events(handle["jobId"])
    ids = [event_id for event_id, _, _ in events]
    with grpc.insecure_channel(web.address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        watched = stub.Watch(generation_pb2.WatchRequest(job_id=handle["jobId"]), timeout=CALL_SECONDS,
                             metadata=[("authorization", f"Bearer {web.keys.alice}")])
        assert [e.id for e in watched] == ids

    resumed = alice.events(handle["jobId"], last_event_id=ids[2])
    assert [event_id for event_id, _, _ in resumed] == ids[3:]
    by_query = alice.get(f"/v1/jobs/{handle['jobId']}/events", params={"after_event_id": ids[-2]})
    assert [event_id for event_id, _, _ in parse_sse(by_query.text.splitlines())] == ids[-1:]


def test_a_malformed_resume_id_is_refused_before_the_stream_starts(alice):
    handle = submit(alice)
    response = alice.get(f"/v1/jobs/{handle['jobId']}/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert "after_event_id" in violations(response)


def test_requests_without_a_valid_key_are_refused_as_aip_193_errors(web):
    for key in (None, "not-a-key"):
        api = Api(web.gateway.http_address, key)
        response = api.post("/v1/jobs", {"prompt": "a red apple"})
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["status"] == "UNAUTHENTICATED" and error["code"] == 401
        assert api.get("/v1/models").status_code == 401


def test_another_tenants_job_is_not_found_on_every_route(web, alice, bob):
    job_id = submit(alice)["jobId"]
    alice.events(job_id)
    for response in (bob.get(f"/v1/jobs/{job_id}"), bob.get(f"/v1/jobs/{job_id}/events"),
                     bob.get(f"/v1/jobs/{job_id}/artifacts/0"), bob.post(f"/v1/jobs/{job_id}:cancel")):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == "no such job"
    assert job_id not in {j["jobId"] for j in bob.get("/v1/jobs").json()["jobs"]}
    assert alice.get(f"/v1/jobs/{job_id}/artifacts/0").status_code == 200


def test_validation_answers_the_same_field_violations_as_grpc(web, alice):
    body = {"prompt": "a red apple", "steps": 100000, "style": "no-such-style"}
    response = alice.post("/v1/jobs", body)
    assert response.status_code == 400
    over_http = violations(response)

    with grpc.insecure_channel(web.address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Submit(generation_pb2.GenerateRequest(prompt="a red apple", steps=100000, style="no-such-style"),
                        timeout=CALL_SECONDS, metadata=[("authorization", f"Bearer {web.keys.alice}")])
    status = rpc_status.from_call(refused.value)
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    assert over_http == {v.field: v.description for v in bad.field_violations}
    assert set(over_http) == {"steps", "style"}


@pytest.mark.parametrize("body, field", [
    ({"prompt": 3}, "body"),
    ({"prompt": "x", "noSuchField": 1}, "body"),
    ({"prompt": "x", "sampler": "SAMPLER_NOPE"}, "body"),
    ({"prompt": "x", "seeds": ["-1"]}, "body"),
])
def test_json_that_is_not_a_generate_request_names_the_problem(alice, body, field):
    response = alice.post("/v1/jobs", body)
    assert response.status_code == 400
    found = violations(response)
    assert set(found) == {field}
    assert "GenerateRequest" in found[field] or "field" in found[field] or "Failed to parse" in found[field]


def test_a_body_that_is_not_json_or_not_an_object_is_refused(alice):
    raw = alice.session.post(alice.base + "/v1/jobs", data=b"{nope", timeout=CALL_SECONDS,
                             headers=alice.headers(**{"Content-Type": "application/json"}))
    assert raw.status_code == 400 and "is not JSON" in violations(raw)["body"]
    listed = alice.post("/v1/jobs", ["a red apple"])
    assert listed.status_code == 400 and "JSON object" in violations(listed)["body"]


def test_a_body_over_the_limit_is_refused_with_413(make_stack):
    web = make_stack(start_worker=True, http_listen="127.0.0.1:0", max_upload_bytes=1000)
    api = Api(web.gateway.http_address, web.keys.alice)
    response = api.post("/v1/jobs", {"prompt": "x" * 2_000_000})  # over (2 x 1000 + 1 MiB) x 4/3 + 64 KiB
    assert response.status_code == 413
    assert "over the limit" in violations(response)["body"]


def test_the_idempotency_key_header_is_the_request_id(alice):
    first = submit_with_key(alice, "order-7")
    again = submit_with_key(alice, "order-7")
    assert again["jobId"] == first["jobId"] and again["existing"] is True
    other = submit_with_key(alice, "order-8")
    assert other["jobId"] != first["jobId"]


def submit_with_key(api: Api, key: str) -> dict:
    response = api.post("/v1/jobs", {"prompt": "a red apple"}, headers={"Idempotency-Key": key})
    assert response.status_code == 200, response.text
    return response.json()


def test_list_jobs_takes_its_filters_as_query_parameters_and_pages(alice):
    ids = [submit(alice)["jobId"] for _ in range(3)]
    for job_id in ids:
        alice.events(job_id)
    first = alice.get("/v1/jobs", params={"page_size": 2, "states": "JOB_STATE_SUCCEEDED"}).json()
    assert len(first["jobs"]) == 2 and first["nextPageToken"]
    rest = alice.get("/v1/jobs", params={"pageSize": 2, "pageToken": first["nextPageToken"],
                                         "states": "JOB_STATE_SUCCEEDED"}).json()
    assert [j["jobId"] for j in first["jobs"] + rest["jobs"]] == ids[::-1]
    none_running = alice.get("/v1/jobs", params=[("states", "JOB_STATE_RUNNING"), ("states", "JOB_STATE_QUEUED")])
    assert none_running.json()["jobs"] == []

    unknown = alice.get("/v1/jobs", params={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in violations(unknown)
    twice = alice.get("/v1/jobs", params=[("page_size", "2"), ("page_size", "3")])
    assert twice.status_code == 400 and "is given more than once" in violations(twice)["page_size"]


def test_cancel_over_http_stops_a_running_job(make_stack):
    web = make_stack(start_worker=False, http_listen="127.0.0.1:0")
    api = Api(web.gateway.http_address, web.keys.alice)
    job_id = submit(api)["jobId"]
    answer = api.post(f"/v1/jobs/{job_id}:cancel").json()
    assert answer == {"state": "JOB_STATE_CANCELLED", "cancelled": True}
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] == "JOB_STATE_CANCELLED"
    assert api.post(f"/v1/jobs/{job_id}:cancel").json()["cancelled"] is False


def test_an_artifact_not_there_is_a_404_that_says_why(alice):
    job_id = submit(alice)["jobId"]
    alice.events(job_id)
    missing = alice.get(f"/v1/jobs/{job_id}/artifacts/5")
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]
    bad_index = alice.get(f"/v1/jobs/{job_id}/artifacts/first")
    assert bad_index.status_code == 400 and "index" in violations(bad_index)


def test_a_stopping_gateway_ends_open_event_streams(make_stack):
    web = make_stack(start_worker=False, http_listen="127.0.0.1:0")
    api = Api(web.gateway.http_address, web.keys.alice)
    job_id = submit(api)["jobId"]
    received: list = []

    def follow():
        received.extend(api.events(job_id))

    reader = threading.Thread(target=follow)
    reader.start()
    threading.Event().wait(0.5)  # the stream is open and has sent `queued`
    web.gateway.stop(grace=0.5)
    reader.join(CALL_SECONDS)
    assert not reader.is_alive(), "the event stream outlived the gateway"
    assert [name for _, name, _ in received] == ["queued"]


def test_http_calls_are_counted_by_route_and_status(alice):
    before = _count("/v1/jobs/{job_id}", "404")
    alice.get("/v1/jobs/0123456789abcdef0123456789abcdef")
    assert _count("/v1/jobs/{job_id}", "404") == before + 1


def _count(route: str, code: str) -> float:
    return metrics.HTTP_REQUESTS.labels(route=route, code=code)._value.get()


def test_the_openapi_document_and_the_page_are_served(alice):
    document = alice.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}:cancel",
                                      "/v1/jobs/{job_id}/events", "/v1/models", "/v1/policy"}
    submit_op = document["paths"]["/v1/jobs"]["post"]
    body = submit_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = document["components"]["schemas"][body.rsplit("/", 1)[-1]]
    assert request["properties"]["seeds"] == {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"}}
    assert "SAMPLER_EULER" in request["properties"]["sampler"]["enum"]

    page = alice.get("/")
    assert page.status_code == 200 and "Atelier" in page.text
    assert alice.get("/static/playground.js").status_code == 200


def test_the_content_policy_in_force_is_readable_over_http_as_over_grpc(web, alice):
    policy = alice.get("/v1/policy")
    assert policy.status_code == 200, policy.text
    with grpc.insecure_channel(web.address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        over_grpc = stub.GetContentPolicy(generation_pb2.GetContentPolicyRequest(), timeout=CALL_SECONDS,
                                          metadata=[("authorization", f"Bearer {web.keys.alice}")])
    assert policy.json() == to_json(over_grpc)
