"""The gRPC contract: complete, and its committed stubs generated from the current .proto."""

import filecmp
import runpy
from pathlib import Path

from google.protobuf import descriptor_pb2

from atelier.v1 import generation_pb2, models_pb2, types_pb2

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_are_fresh(tmp_path):
    generate = runpy.run_path(str(ROOT / "proto" / "generate.py"))["generate"]
    fresh = generate(tmp_path)
    assert fresh
    for path in fresh:
        committed = ROOT / "atelier" / "v1" / path.name
        assert committed.exists(), f"{path.name} is generated but not committed: run `make proto`"
        assert filecmp.cmp(path, committed, shallow=False), f"atelier/v1/{path.name} is stale: run `make proto`"
    committed_names = {p.name for p in (ROOT / "atelier" / "v1").iterdir() if p.is_file()}
    assert committed_names == {p.name for p in fresh}


def _methods(file_descriptor, service):
    svc = file_descriptor.services_by_name[service]
    return {m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming) for m in svc.methods}


def test_generation_service_has_every_rpc():
    assert _methods(generation_pb2.DESCRIPTOR, "Generation") == {
        "Submit": ("atelier.v1.GenerateRequest", "atelier.v1.JobHandle", False),
        "Generate": ("atelier.v1.GenerateRequest", "atelier.v1.JobEvent", True),
        "Watch": ("atelier.v1.WatchRequest", "atelier.v1.JobEvent", True),
        "GetJob": ("atelier.v1.GetJobRequest", "atelier.v1.Job", False),
        "CancelJob": ("atelier.v1.CancelJobRequest", "atelier.v1.CancelJobResponse", False),
        "ListJobs": ("atelier.v1.ListJobsRequest", "atelier.v1.ListJobsResponse", False),
        "GetContentPolicy": ("atelier.v1.GetContentPolicyRequest", "atelier.v1.ContentPolicy", False),
        "LookupImage": ("atelier.v1.LookupImageRequest", "atelier.v1.LookupImageResponse", False),
    }


def test_models_service_lists_models():
    assert _methods(models_pb2.DESCRIPTOR, "Models") == {
        "ListModels": ("atelier.v1.ListModelsRequest", "atelier.v1.ListModelsResponse", False)
    }
    fields = set(models_pb2.ModelInfo.DESCRIPTOR.fields_by_name)
    assert {"name", "version", "width", "height", "latent_channels", "styles", "samplers",
            "default_steps", "default_guidance_scale", "ready"} <= fields


def test_generate_request_carries_everything_a_studio_needs():
    fields = set(generation_pb2.GenerateRequest.DESCRIPTOR.fields_by_name)
    assert {
        "request_id", "model", "model_version", "prompt", "negative_prompt", "style", "width", "height",
        "steps", "sampler", "guidance_scale", "seeds", "count", "init_image", "strength", "mask", "tiling",
        "output_format", "priority", "deadline", "preview_every_steps", "labels", "prompts",
    } <= fields


def test_job_event_is_one_oneof_with_every_kind():
    d = generation_pb2.JobEvent.DESCRIPTOR
    assert [o.name for o in d.oneofs] == ["event"]
    assert {f.name for f in d.oneofs[0].fields} == {"queued", "started", "progress", "preview", "artifact", "finished",
                                                  "policy"}
    assert {"id", "time", "job_id"} <= set(d.fields_by_name)
    provenance = set(types_pb2.Provenance.DESCRIPTOR.fields_by_name)
    assert {"model_name", "model_version", "model_sha256", "sampler", "steps", "guidance_scale", "seed"} <= provenance


def test_enums_are_prefixed_and_start_unspecified():
    for enum in types_pb2.DESCRIPTOR.enum_types_by_name.values():
        prefix = "".join("_" + c if c.isupper() else c for c in enum.name).lstrip("_").upper() + "_"
        assert enum.values[0].name == prefix + "UNSPECIFIED" and enum.values[0].number == 0
        assert all(v.name.startswith(prefix) for v in enum.values), enum.name


def test_sampler_enum_matches_the_sampler_catalog():
    from diffusion.sampler_catalog import SAMPLER_NAMES

    names = {v.name.removeprefix("SAMPLER_").lower() for v in types_pb2.Sampler.DESCRIPTOR.values if v.number}
    assert names == set(SAMPLER_NAMES)


def test_every_field_and_enum_value_is_commented():
    for module in (types_pb2, generation_pb2, models_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        source = (ROOT / "proto" / proto.name).read_text().splitlines()
        for number, line in enumerate(source):
            stripped = line.strip()
            is_member = (
                stripped.endswith(";") and "=" in stripped and not stripped.startswith(("option", "syntax", "//"))
            ) or stripped.startswith(("rpc ", "message ", "enum ", "service ", "oneof "))
            if is_member:
                previous = source[number - 1].strip()
                assert previous.startswith("//"), f"{proto.name}:{number + 1} has no comment: {stripped}"
