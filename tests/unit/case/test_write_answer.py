"""A write's answer is the WriteResult the OpenAPI document promises, byte for byte as the
model would serialise it, though written straight from the command's result."""

from __future__ import annotations

from uuid import UUID

import pytest

from services.case.application.service import CommandResult
from services.case.entrypoints.http import WriteResult, respond

CASE = UUID("6f0a3c1e-8a36-4c4b-9d7e-0a4b5f3f1c11")
EVENT = "0b8d1f36-3f0e-4f6e-9d55-2d7c4a1e9b20"


@pytest.mark.parametrize(
    "result",
    [
        CommandResult(
            CASE,
            4,
            91,
            [{"id": EVENT, "type": "vss.case.worksheet-completed.v1", "version": 4, "position": 91}],
        ),
        CommandResult(
            CASE,
            2,
            17,
            [
                {"id": EVENT, "type": "vss.case.opened.v1", "version": 1, "position": 16},
                {"id": str(CASE), "type": "vss.case.coordinator-assigned.v1", "version": 2, "position": 17},
            ],
            created_id="goal-7",
            replayed=True,
        ),
    ],
)
def test_the_answer_is_the_write_result_model_serialised(result: CommandResult) -> None:
    answer = respond(result)

    assert answer.body == WriteResult.model_validate(result.to_json()).model_dump_json().encode()
    assert answer.media_type == "application/json"
    assert answer.headers["etag"] == f'"{result.version}"'
    assert answer.headers["vss-log-position"] == str(result.position)
    assert answer.headers.get("idempotency-replayed") == ("true" if result.replayed else None)


def test_an_opened_case_answers_201_with_its_location() -> None:
    result = CommandResult(
        CASE, 1, 5, [{"id": EVENT, "type": "vss.case.opened.v1", "version": 1, "position": 5}]
    )

    answer = respond(result, 201, {"Location": f"/v1/cases/{CASE}"})

    assert answer.status_code == 201
    assert answer.headers["location"] == f"/v1/cases/{CASE}"
