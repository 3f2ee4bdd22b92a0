"""A DP quantile whose value's interval is wider apart than a double holds (review,
2026-12-05): its bins' arithmetic overflowed on a row past a threshold the analyst chose
(``GREATEST(wage * c, -1e308)``), and the release crashed after its noise was drawn, for
free and unaudited: one exact bit of a row's value per question. Now such bounds are
refused before anything runs, and any fault of a DP release once its noise may have been
drawn is withheld and spent like a release too large to send."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from federation import dp_hist
from federation.envelope import Envelope
from federation.outcome import Code
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.grant_replay import violations
from gateway.release import query as query_release
from tests.unit.owner_parts import OPERATOR, org_grant, owner_parts
from tests.unit.test_dp_withheld import ORG
from tests.unit.test_dp_withheld import _env as _env_for


def _env(sql: str) -> Envelope:
    return _env_for(sql, 20)


def _wages(parts) -> str:  # noqa: ANN001 - OwnerParts
    path = parts.data / "w.parquet"
    wages = [1000.0] * 300 + [7.3e7]
    pq.write_table(pa.table({"id": list(range(len(wages))), "wage": wages}), path)
    cols = (
        ColumnSpec("id", "int64", lower=0, upper=1000),
        ColumnSpec("wage", "float64", lower=0, upper=1e8),
    )
    desc = DatasetDescriptor("w", "W", "wages", "test", "L3", "static", str(path), "parquet", cols)
    parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
    grant = parts.grants.add(
        org_grant(
            "w", ORG, {"id": ("filter",), "wage": ("aggregate", "extremes")},
            dp_epsilon=0.5, dp_budget=100.0, min_group_size=10,
        )
    )  # fmt: skip
    return grant.id


def test_bounds_wider_apart_than_a_double_are_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    with owner_parts(tmp_path) as parts:
        grant_id = _wages(parts)
        answers = []
        for c in ("1.0e300", "1.2e300", "1.5e300"):  # the row of 7.3e7 overflows from 1.1e300
            sql = f"SELECT approx_quantile(GREATEST(wage * {c}, -1e308), 0.5) AS q FROM w"
            (report,) = parts.owner.execute(_env(sql)).owners
            assert report.error is not None
            answers.append((report.error.code, report.error.reason))
        # the same refusal whatever the threshold: nothing read from the rows, nothing spent
        assert all(code is Code.INVALID_ARGUMENT and "wider apart" in why for code, why in answers)
        assert parts.grants.get(grant_id).epsilon_spent == 0
        refused = [e for e in parts.audit.entries() if e.data["kind"] == "query.refused"]
        assert len(refused) == 3
        # a narrower expression is answered
        (report,) = parts.owner.execute(
            _env("SELECT approx_quantile(wage * 2, 0.5) AS q FROM w WHERE id < 100")
        ).owners
        assert report.error is None


def test_a_histogram_refuses_bounds_its_bins_cannot_hold() -> None:
    with pytest.raises(dp_hist.HistError, match="wider apart"):
        dp_hist.bin_index(pa.array([1.0]).to_numpy(), -1e308, 1.2e308, 16)


def test_a_fault_after_the_noise_is_withheld_and_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails once a DP release's noise may have been drawn (here a fault planted
    in the protect step) is withheld and charged, in a release entry; a fault before
    noise under no DP is audited as a refusal."""
    with owner_parts(tmp_path) as parts:
        grant_id = _wages(parts)

        def broken(self, computed, decision):  # noqa: ANN001, ANN202
            raise ValueError("a planted fault")

        monkeypatch.setattr(query_release.QueryRelease, "protect", broken)
        (report,) = parts.owner.execute(
            _env("SELECT approx_quantile(wage, 0.5) AS q FROM w WHERE id < 100")
        ).owners
        assert report.error is not None and report.error.code is Code.INTERNAL
        assert "privacy budget is spent" in report.error.reason
        assert "planted" not in report.error.reason  # Python's text stays in the log
        assert parts.grants.get(grant_id).epsilon_spent == pytest.approx(0.5)
        entries = list(parts.audit.entries())
        released = [e.data for e in entries if e.data["kind"] == "release"]
        assert [e["withheld"] for e in released] == ["failed once noised"]
        assert violations((e.seq, e.data["kind"], e.body) for e in entries) == []
