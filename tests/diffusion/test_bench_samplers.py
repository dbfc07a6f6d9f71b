"""Smoke run of ``python -m bench.samplers --quick``: figures present, plot written."""

import json

import pytest


@pytest.mark.slow
def test_bench_samplers_quick(tmp_path, capsys):
    from bench.samplers import main

    record = main(["--quick", "--plot", str(tmp_path / "samplers.png")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(record, sort_keys=True, default=float))
    figures = record["figures"]
    assert set(figures["sliced_w2"]) >= {"ddim", "dpmpp_2m", "unipc"}
    assert (tmp_path / "samplers.png").stat().st_size > 10_000
    # The reference is DDIM's best schedule at 50 steps, and more DDIM steps come closer to the data.
    assert figures["ddim_50_sliced_w2"] == min(figures["ddim_50_by_schedule"].values()) > 0
    ddim = figures["sliced_w2"]["ddim"]
    assert ddim["4"] > ddim["10"] > ddim["50"]
    at_10 = {name: min(v for k, v in curve.items() if int(k) <= 10) for name, curve in figures["sliced_w2"].items()}
    assert figures["best_at_10_nfe"] == min(at_10, key=at_10.get)
    reach = figures["nfe_to_match_ddim_50"][figures["default_sampler"]]
    assert figures["goal_default_le_10_nfe_matches_ddim_50"] == (reach is not None and reach <= 10)
