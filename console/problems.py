"""Refusals as the API answers them: `{"error", "field", "allowed"}` from the admin commands'
own InvalidCommand (the validation rules live in admin/ only), with the HTTP status each kind
of refusal gets, and every bad field of a form at once rather than the first."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from katagate.admin.errors import InvalidCommand, NotFound, NothingToChange


@dataclass(frozen=True)
class Problem:
    status: int
    error: str
    field: str | None = None
    allowed: Any = None
    others: tuple[Problem, ...] = ()  # the other bad fields of the same request
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. Retry-After

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "field": self.field,
                                "allowed": self.allowed}
        if self.others:
            body["errors"] = [{"error": p.error, "field": p.field, "allowed": p.allowed}
                              for p in (self, *self.others)]
        return body


class ProblemError(Exception):
    """Raised at the edge; the app turns it into its JSON answer."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.error)
        self.problem = problem


def status_of(refusal: InvalidCommand) -> int:
    if isinstance(refusal, NotFound):
        return 404
    if isinstance(refusal, NothingToChange):
        return 409  # valid, but already in force: no event without a change
    return 422


def problem(refusal: InvalidCommand) -> Problem:
    return Problem(status_of(refusal), str(refusal), refusal.field, refusal.allowed)


def validate_each(validate: Callable[[Mapping[str, object]], object],
                  changes: Mapping[str, object]) -> None:
    """Run `validate` on each field alone, then on all together (rules between fields), and
    refuse with every bad field named, so a form can mark each of them."""
    refusals: list[InvalidCommand] = []
    for name, value in changes.items():
        try:
            validate({name: value})
        except InvalidCommand as exc:
            refusals.append(exc)
    if not refusals:
        try:
            validate(changes)
        except InvalidCommand as exc:
            refusals.append(exc)
    if refusals:
        first, *others = (problem(r) for r in refusals)
        raise ProblemError(Problem(first.status, first.error, first.field, first.allowed,
                                   tuple(others)))
