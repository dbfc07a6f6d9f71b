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
    assert figures["ddim_50_sliced_w2"] > 0 and (tmp_path / "samplers.png").stat().st_size > 10_000
