"""What a home and the analyst's CLI take from an owner (review, 2026-12-04: a PSI
matcher answering under an absolute "request id" made the CLI write outside its folder
and replaced a receipt the home kept for an earlier request)."""

from __future__ import annotations

import pytest

from federation.psi import frames as f
from federation.reports import OwnerReport
from gateway.cli.common import file_name
from gateway.errors import FailedPrecondition
from gateway.roles.psi_home import _check_answer


@pytest.mark.parametrize(
    ("parts", "name"),
    [
        (("0e47c113", "wuhu"), "0e47c113-wuhu"),
        (("/home/analyst/package", "m"), "_home_analyst_package-m"),
        (("..", "..", "x"), "-..-x"),
        (("r", "evil/../../x"), "r-evil_.._.._x"),
        (("0001", "安徽"), "0001-__"),
    ],
)
def test_a_file_name_from_server_ids_stays_in_its_folder(parts: tuple[str, ...], name: str) -> None:
    assert file_name(*parts) == name
    assert "/" not in file_name(*parts) and not file_name(*parts).startswith(".")


def _answer(request_id: str, *nodes: str) -> f.PsiAnswer:
    owners = tuple(OwnerReport(n) for n in nodes)
    return f.PsiAnswer(request_id, 12, False, 5, owners)


def test_a_psi_answer_names_this_request_and_only_its_sides() -> None:
    sides = {"anhui", "miit"}
    _check_answer(_answer("r1", "anhui", "miit"), "r1", sides)
    for bad in (
        _answer("/tmp/x", "anhui", "miit"),
        _answer("r1", "anhui", "miit", "hefei"),
        _answer("r1", "anhui", "anhui"),
    ):
        with pytest.raises(FailedPrecondition, match="matching owner"):
            _check_answer(bad, "r1", sides)
