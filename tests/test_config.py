import pytest

from weighbridge.core.config import default_config, load_config
from weighbridge.core.example_config import EXAMPLE_CONFIG
from weighbridge.core.errors import ConfigError

from .conftest import write


def test_example_config_from_init_is_valid(tmp_path):
    cfg = load_config(write(tmp_path / "weighbridge.yaml", EXAMPLE_CONFIG))
    assert [m.name for m in cfg.models] == ["smollm2-135m", "gemma3-270m"]
    assert cfg.models[1].mode == "completion"
    assert cfg.suites == ["builtin:starter"]
    assert cfg.models[0].params.temperature == 0 and cfg.models[0].params.seed == 42


def test_default_config_is_deterministic():
    cfg = default_config()
    assert all(m.params.temperature == 0 for m in cfg.models)
    assert {m.bundled for m in cfg.models} == {"qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m"}
    assert cfg.suites == ["builtin:starter", "builtin:tools[::4]"]


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path / "bad.yaml", "models:\n  - name: a\n    backend: [llamacpp\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and ":4" in str(e.value) or ":3" in str(e.value)
    assert "YAML syntax error" in str(e.value)


def test_unknown_field_names_file_line_and_field(tmp_path):
    p = write(tmp_path / "w.yaml", "models:\n  - name: a\n    backend: llamacpp\n    bundled: smollm2-135m\n"
                                   "    temprature: 0.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    err = e.value
    assert err.path == str(p) and err.line == 5 and err.field == "models.0.temprature"
    assert f"{p}:5: field 'models.0.temprature': unknown field" in str(err)


def test_bad_value_points_at_its_line(tmp_path):
    p = write(tmp_path / "w.yaml", "models:\n  - name: a\n    backend: llamacpp\n    bundled: x\n"
                                   "    params:\n      temperature: 9\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.line == 6 and e.value.field == "models.0.params.temperature"


def test_openai_model_needs_base_url(tmp_path):
    p = write(tmp_path / "w.yaml", "models:\n  - name: remote\n    backend: openai\n    model: m\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.line == 2 and "base_url" in str(e.value)


def test_duplicate_model_names_rejected(tmp_path):
    p = write(tmp_path / "w.yaml", "models:\n  - {name: a, backend: llamacpp, bundled: x}\n"
                                   "  - {name: a, backend: llamacpp, bundled: y}\n")
    with pytest.raises(ConfigError, match="two models are named 'a'"):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_paths_resolve_relative_to_the_config(tmp_path):
    p = write(tmp_path / "sub" / "w.yaml", "models:\n  - {name: a, backend: llamacpp, path: m.gguf}\nstore: runs.db\n")
    cfg = load_config(p)
    assert cfg.resolve(cfg.store) == tmp_path / "sub" / "runs.db"
