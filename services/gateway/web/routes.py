"""The HTTP/JSON API's routes: each one an RPC of the gRPC services, as AIP-127 maps them.

`{name}` in a path fills the request field of that name; `body` routes take the request as a
JSON object (proto3 JSON: lowerCamelCase or the proto's own names), the others from query
parameters. The events route is `Watch` as server-sent events. This table is the one place
the two edges meet: the OpenAPI document (openapi.py) and the app (app.py) are made from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from atelier.v1 import generation_pb2, models_pb2

SERVICES = {
    "Generation": generation_pb2.DESCRIPTOR.services_by_name["Generation"],
    "Models": models_pb2.DESCRIPTOR.services_by_name["Models"],
}


@dataclass(frozen=True)
class Route:
    verb: str
    path: str
    service: str
    rpc: str
    summary: str
    body: bool = False  # the JSON body is the request ("body: *"); otherwise query parameters
    events: bool = False  # a server-streaming RPC answered as text/event-stream

    @property
    def method(self) -> MethodDescriptor:
        return SERVICES[self.service].methods_by_name[self.rpc]

    @property
    def request_type(self) -> Descriptor:
        return self.method.input_type

    @property
    def response_type(self) -> Descriptor:
        return self.method.output_type

    def new_request(self):
        return message_factory.GetMessageClass(self.request_type)()

    @property
    def path_fields(self) -> list[str]:
        return [part[1:part.index("}")] for part in self.path.split("/") if part.startswith("{")]


ROUTES = (
    Route("POST", "/v1/jobs", "Generation", "Submit", "Submit a job (generate, upscale, bulk)", body=True),
    Route("GET", "/v1/jobs", "Generation", "ListJobs", "The caller's jobs, newest first"),
    Route("GET", "/v1/jobs/{job_id}", "Generation", "GetJob", "A job's state and progress"),
    Route("POST", "/v1/jobs/{job_id}:cancel", "Generation", "CancelJob", "Cancel a job"),
    Route("GET", "/v1/jobs/{job_id}/events", "Generation", "Watch",
          "A job's events as server-sent events; resumes after `Last-Event-ID`", events=True),
    Route("GET", "/v1/models", "Models", "ListModels", "The models, styles and samplers on offer"),
    Route("GET", "/v1/policy", "Generation", "GetContentPolicy", "The content policy in force for the caller"),
    Route("POST", "/v1/images:lookup", "Generation", "LookupImage",
          "Was this image made here? The caller's delivered images that are this picture", body=True),
)

# Not an RPC: an artifact's file, read off its `artifact` event (gRPC clients get it in the event).
ARTIFACT_PATH = "/v1/jobs/{job_id}/artifacts/{index}"
