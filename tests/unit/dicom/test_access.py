"""The caller policy: every form of CAREGRAPH_DICOM_ALLOWED_CALLERS, and what it admits."""

from __future__ import annotations

import pytest

from caregraph.errors import ConfigError
from devices.dicom.access import (
    DEFAULT_OPERATIONS,
    OPERATIONS,
    CallerRule,
    caller_policy,
    operation,
    setting_value,
)
from devices.dicom.ul import context_operations
from security.allowlists import DicomCaller


def test_unset_admits_anyone_to_everything() -> None:
    for setting in (None, "", "   "):
        policy = caller_policy(setting)
        assert policy.operations("ANY", "198.51.100.1") == OPERATIONS
        assert policy.destination("ANY") is None


def test_the_older_shape_ae_to_hosts_keeps_every_operation() -> None:
    policy = caller_policy({"CT1": {"10.0.0.5"}, "MR2": set()})
    assert policy.operations("CT1", "10.0.0.5") == OPERATIONS
    assert policy.operations("CT1", "10.0.0.6") is None
    assert policy.operations("MR2", "203.0.113.9") == OPERATIONS
    assert policy.operations("XA3", "10.0.0.5") is None


def test_json_text_with_hosts_operations_and_port() -> None:
    policy = caller_policy(
        '{"CT1": {"hosts": ["10.0.0.5"], "operations": ["C-STORE"]},'
        ' "PACS": {"hosts": ["10.0.0.9"], "operations": ["find", "MOVE"], "port": 104},'
        ' "WS": {}}'
    )
    assert policy.operations("CT1", "10.0.0.5") == {"echo", "store"}
    assert policy.operations("PACS", "10.0.0.9") == {"echo", "find", "move"}
    assert policy.operations("WS", "192.0.2.1") == DEFAULT_OPERATIONS
    assert policy.destination("PACS") == ("10.0.0.9", 104)
    assert policy.destination("CT1") is None  # no port: not a move destination
    assert policy.destination("NOBODY") is None


def test_the_settings_model_objects_are_read_as_they_are() -> None:
    setting = {"CT1": DicomCaller(hosts=["10.0.0.5"], operations=["find"])}
    policy = caller_policy(setting)
    assert policy.operations("CT1", "10.0.0.5") == {"echo", "find"}
    assert policy.operations("CT1", "10.0.0.7") is None


def test_compact_text_for_environment_files() -> None:
    policy = caller_policy(
        "CT1@10.0.0.5:store; PACS@10.0.0.9/11112:c-find,c-move ;WS@*:echo;ANY@;"
        "TWO@10.0.0.1|10.0.0.2/104:get"
    )
    assert policy.callers is not None
    assert policy.callers["CT1"] == CallerRule(frozenset({"10.0.0.5"}), frozenset({"store"}))
    assert policy.operations("PACS", "10.0.0.9") == {"echo", "find", "move"}
    assert policy.destination("PACS") == ("10.0.0.9", 11112)
    assert policy.operations("WS", "192.0.2.44") == {"echo"}
    assert policy.operations("ANY", "192.0.2.44") == DEFAULT_OPERATIONS
    assert policy.operations("TWO", "10.0.0.2") == {"echo", "get"}
    assert policy.destination("TWO") is None  # two hosts: which one to call is a guess


@pytest.mark.parametrize(
    "setting",
    [
        '{"CT1": {"operations": ["delete"]}}',
        '{"CT1": {"hosts": "10.0.0.5"}}',
        '{"CT1": {"port": 70000}}',
        '{"CT1": {"port": "104"}}',
        '{"CT1": {"colour": "red"}}',
        '{"AN_AE_TITLE_THAT_IS_TOO_LONG": {}}',
        "{not json",
        "CT1@10.0.0.5/abc:store",
        "CT1@10.0.0.5:erase",
        "@10.0.0.5:store",
        42,
    ],
)
def test_a_setting_that_cannot_be_read_fails_at_start(setting: object) -> None:
    with pytest.raises(ConfigError):
        caller_policy(setting)


def test_operation_spellings() -> None:
    assert operation("C-STORE") == "store"
    assert operation(" find ") == "find"
    assert operation("c_move") == "move"
    with pytest.raises(ConfigError):
        operation("N-CREATE")


def test_which_operations_need_which_contexts() -> None:
    assert context_operations("1.2.840.10008.1.1") == {"echo"}
    assert context_operations("1.2.840.10008.5.1.4.1.2.2.1") == {"find"}
    assert context_operations("1.2.840.10008.5.1.4.1.2.1.3") == {"get"}
    assert context_operations("1.2.840.10008.5.1.4.1.2.2.2") == {"move"}
    # CT Image Storage: stored by a modality, or sent back in a C-GET
    assert context_operations("1.2.840.10008.5.1.4.1.1.2") == {"store", "get"}


def test_the_setting_value_for_the_settings_model() -> None:
    compact = setting_value("CT1@10.0.0.5:store;PACS@10.0.0.9/104:find,move")
    assert compact == {
        "CT1": {"hosts": ["10.0.0.5"], "operations": ["echo", "store"], "port": None},
        "PACS": {"hosts": ["10.0.0.9"], "operations": ["echo", "find", "move"], "port": 104},
    }
    assert setting_value('{"CT1": {"operations": ["C-FIND"]}}') == {
        "CT1": {"hosts": [], "operations": ["echo", "find"], "port": None}
    }
    # what the model makes of it reads back the same
    assert isinstance(compact, dict)
    models = {ae: DicomCaller(**v) for ae, v in compact.items()}
    assert caller_policy(models).operations("CT1", "10.0.0.5") == {"echo", "store"}
    assert setting_value("") is None and setting_value(None) is None
    parsed = {"X": DicomCaller()}
    assert setting_value(parsed) is parsed
    with pytest.raises(ValueError):
        setting_value('{"CT1": {"operations": ["delete"]}}')
    with pytest.raises(ValueError):
        setting_value("CT1@h:erase")
