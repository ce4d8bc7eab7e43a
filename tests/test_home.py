"""Where the state root is, and how dev mode is switched on."""

from __future__ import annotations

from pathlib import Path

import pytest

from loader.errors import LoaderError
from loader.home import Home, HostSettings, dev_mode_from, read_host_settings


def test_home_from_option_then_env_then_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PM_PLUGINS_HOME", str(tmp_path / "env"))
    assert Home.locate(tmp_path / "flag").root == tmp_path / "flag"
    assert Home.locate().root == tmp_path / "env"
    monkeypatch.delenv("PM_PLUGINS_HOME")
    assert Home.locate().root.name == "pm-plugins"


def test_dev_mode_from_flag_env_or_host_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PM_PLUGINS_DEV_MODE", raising=False)
    off = HostSettings()
    assert not dev_mode_from(False, off)
    assert dev_mode_from(True, off)
    assert dev_mode_from(False, HostSettings(dev_mode=True))
    monkeypatch.setenv("PM_PLUGINS_DEV_MODE", "1")
    assert dev_mode_from(False, off)
    monkeypatch.setenv("PM_PLUGINS_DEV_MODE", "0")
    assert not dev_mode_from(False, off)


def test_host_json_is_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    assert read_host_settings(path) == HostSettings()
    path.write_text('{"devMode": true, "disabledModules": ["spn", "auth"]}')
    assert read_host_settings(path) == HostSettings(True, ("spn", "auth"))
    for bad, words in [
        ('{"devMode": 1}', 'field "devMode" must be true or false'),
        ('{"devMode": true, "devMode": false}', 'has the key "devMode" twice'),
        ('{"dev_mode": true}', 'unknown field "dev_mode"'),
        ('{"disabledModules": [1]}', "must be a string"),
    ]:
        path.write_text(bad)
        with pytest.raises(LoaderError, match=words):
            read_host_settings(path)
