"""generation_config in every spelling users write it, and clear errors for what is wrong."""

from __future__ import annotations

import json

import pytest
from google.genai import types

from gemini_tasks.gemini.config import GenerationConfigError, build_generate_config

EXPECTED = types.GenerateContentConfig(
    temperature=0.2,
    max_output_tokens=64,
    response_mime_type="application/json",
    thinking_config=types.ThinkingConfig(thinking_budget=0),
    safety_settings=[types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE")],
)

SPELLINGS = {
    "snake": {"temperature": 0.2, "max_output_tokens": 64, "response_mime_type": "application/json",
              "thinking_config": {"thinking_budget": 0},
              "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
    "camel": {"temperature": 0.2, "maxOutputTokens": 64, "responseMimeType": "application/json",
              "thinkingConfig": {"thinkingBudget": 0},
              "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
    "mixed": {"temperature": 0.2, "max_output_tokens": 64, "responseMimeType": "application/json",
              "thinkingConfig": {"thinking_budget": 0},
              "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]},
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_dict_spellings(spelling):
    assert build_generate_config(SPELLINGS[spelling]) == EXPECTED


def test_object_passes_through_validated():
    assert build_generate_config(EXPECTED) == EXPECTED


def test_json_dict_from_the_wire():
    wire = json.loads(json.dumps(EXPECTED.model_dump(mode="json", exclude_none=True)))
    assert build_generate_config(wire) == EXPECTED


def test_bytes_in_a_wire_dict_are_decoded():
    config = types.GenerateContentConfig(
        system_instruction=types.Content(role="user", parts=[types.Part(inline_data=types.Blob(data=b"\x00\x01", mime_type="audio/wav"))]))
    wire = json.loads(json.dumps(config.model_dump(mode="json", exclude_none=True)))
    assert build_generate_config(wire) == config


def test_readme_generation_config():
    config = build_generate_config({"temperature": 0.9, "top_p": 0.8, "top_k": 40, "max_output_tokens": 1000, "candidate_count": 1})
    assert (config.temperature, config.top_p, config.top_k, config.max_output_tokens, config.candidate_count) == (0.9, 0.8, 40, 1000, 1)


def test_sdk_objects_inside_a_dict():
    config = build_generate_config({"thinking_config": types.ThinkingConfig(thinking_budget=128), "temperature": 1})
    assert config.thinking_config.thinking_budget == 128


@pytest.mark.parametrize("empty", [None, {}])
def test_nothing_gives_none(empty):
    assert build_generate_config(empty) is None


@pytest.mark.parametrize(
    "config,needles",
    [
        ({"temprature": 0.1}, ["unknown field 'temprature'", "did you mean 'temperature'"]),
        ({"maxOutputToken": 5}, ["unknown field 'maxOutputToken'", "did you mean 'maxOutputTokens'"]),
        ({"thinkingConfig": {"thinkingBudgt": 0}}, ["unknown field 'thinkingConfig.thinkingBudgt'", "thinkingBudget"]),
        ({"temperature": "warm"}, ["invalid value for 'temperature'"]),
        ({"http_options": {"base_url": "http://elsewhere"}}, ["may not set http_options"]),
        ({"httpOptions": {"timeout": 1}}, ["may not set httpOptions"]),
        ("temperature=1", ["must be a dict or a google.genai.types.GenerateContentConfig", "str"]),
        ({"foo": 1, "bar": 2}, ["unknown field 'foo'", "unknown field 'bar'"]),
    ],
)
def test_errors_name_the_field(config, needles):
    with pytest.raises(GenerationConfigError) as info:
        build_generate_config(config)
    assert isinstance(info.value, ValueError)
    for needle in needles:
        assert needle in str(info.value)


def test_http_options_on_an_object_is_refused_too():
    with pytest.raises(GenerationConfigError, match="http_options"):
        build_generate_config(types.GenerateContentConfig(http_options=types.HttpOptions(base_url="http://x")))
