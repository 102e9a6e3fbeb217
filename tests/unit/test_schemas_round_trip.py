"""Every event decodes equal to itself once encoded, by construction: the decider hands its
readers the event it encoded instead of decoding the record (eventlog/decoded.py `remember`),
so a schema that lost or changed a value between the two would make live state differ from a
replay of the same log. These checks fail on the features that would: floats (NaN and
infinities become null), serializers, excluded and computed fields (the serialized schema then
differs from the validated one)."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest
from pydantic import BaseModel

import katagate.schemas
from katagate.schemas import Event, decode_event, encode_event
from katagate.schemas.union import EVENT_TYPES
from tests.unit.fixtures.events import sample_events


@pytest.mark.parametrize("cls", EVENT_TYPES.values(), ids=list(EVENT_TYPES))
def test_given_an_event_type_then_what_it_writes_is_what_it_reads(cls: type[Event]) -> None:
    validated = cls.model_json_schema(mode="validation")
    assert cls.model_json_schema(mode="serialization") == validated
    assert '"number"' not in json.dumps(validated)  # only integers: no float to lose


def schema_models() -> list[type[BaseModel]]:
    """Every model the schemas package defines: the events and what they hold."""
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(katagate.schemas.__path__):
        module = importlib.import_module(f"katagate.schemas.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseModel) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return list(found.values())


def test_given_the_schemas_models_then_none_serializes_a_value_its_own_way() -> None:
    models = schema_models()
    assert len(models) > len(EVENT_TYPES)  # the events and the values inside them
    custom = [cls.__qualname__ for cls in models
              if cls.__pydantic_decorators__.field_serializers
              or cls.__pydantic_decorators__.model_serializers
              or cls.model_computed_fields]
    assert custom == []


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: e.type)
def test_given_a_sample_event_then_it_decodes_equal_with_fields_of_the_same_types(
        event: Event) -> None:
    again = decode_event(encode_event(event))
    assert again == event
    assert {name: type(value) for name, value in again} == {
        name: type(value) for name, value in event}
    assert encode_event(again) == encode_event(event)
