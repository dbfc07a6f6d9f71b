from pathlib import Path

import pytest

from services.common.settings import Settings, SettingsError, markdown_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIGURATION.md"


def test_defaults_are_consistent():
    s = Settings.from_env({})
    assert s.redis_url.startswith("redis://")
    assert s.visibility_timeout > s.task_time_limit > s.task_soft_time_limit


def test_environment_variables_are_parsed_by_type():
    s = Settings.from_env(
        {"ATELIER_MAX_BATCH": "4", "ATELIER_BATCH_WAIT_MS": "0.5", "ATELIER_MODEL_REPOSITORY": "/srv/models",
         "ATELIER_REDIS_URL": "redis://r:6379/2", "ATELIER_MAX_STEPS": ""}
    )
    assert s.max_batch == 4 and s.batch_wait_ms == 0.5
    assert s.model_repository == Path("/srv/models")
    assert s.redis_url == "redis://r:6379/2"
    assert s.max_steps == Settings().max_steps  # empty means default


def test_overrides_win_over_environment():
    assert Settings.from_env({"ATELIER_MAX_BATCH": "4"}, max_batch=2).max_batch == 2


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ATELIER_MAX_BATCH": "many"}, "ATELIER_MAX_BATCH='many' is not an integer"),
        ({"ATELIER_BATCH_WAIT_MS": "soon"}, "ATELIER_BATCH_WAIT_MS='soon' is not a number"),
        ({"ATELIER_VISIBILITY_TIMEOUT": "60"}, "ATELIER_VISIBILITY_TIMEOUT=60 must exceed ATELIER_TASK_TIME_LIMIT"),
        ({"ATELIER_TLS_CERT": "/c.pem"}, "ATELIER_TLS_CERT and ATELIER_TLS_KEY"),
        ({"ATELIER_MAX_BATCH": "0"}, "ATELIER_MAX_BATCH must be at least 1"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_configuration_doc_lists_every_setting():
    assert markdown_table() in DOC.read_text(), "docs/CONFIGURATION.md is stale: regenerate its table"


def test_settings_handed_to_a_child_through_the_environment_read_back_the_same(tmp_path):
    settings = Settings.from_env({}, visibility_timeout=20, task_time_limit=15, task_soft_time_limit=14,
                                 model_repository=tmp_path, batch_wait_ms=3.5, default_model="tiny")
    env = settings.to_env()
    assert env["ATELIER_VISIBILITY_TIMEOUT"] == "20" and "ATELIER_TLS_CERT" not in env  # unset: left out
    assert Settings.from_env(env) == settings
