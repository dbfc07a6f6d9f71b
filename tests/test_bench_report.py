import json

from bench.report import finish


def test_finish_prints_one_json_line_with_figures_machine_and_date(capsys):
    record = finish("toy", {"steps_per_second": 1.5})
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == record
    assert record["figures"] == {"steps_per_second": 1.5}
    assert record["machine"]["cpu_count"] >= 1 and len(record["date"]) == 10
