"""The HTTP/JSON edge of the gateway: the same servicers as gRPC, reached through a route table
(docs/API.md, "HTTP/JSON API"), events as server-sent events, an OpenAPI document made from the
.proto descriptors, and the playground page. No job logic lives here."""
