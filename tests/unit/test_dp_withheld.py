"""A noised result too large to send (review, 2026-12-05): the refusal came after the
noise was drawn and before the spend, with the exact byte count in its message, so each
free refusal was a fresh sample of the noisy group count, as many as asked. Now its
epsilon is spent (a release entry of nothing sent, ``withheld``) and no size is told."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from federation.envelope import Envelope, Requester
from federation.outcome import Code
from federation.sql import Kind, parse, state_columns
from gateway import disclosure, privacy
from gateway.descriptor import ColumnSpec, DatasetDescriptor
from gateway.errors import DeadlineExceeded, NoisedTooLarge, ResourceExhausted
from gateway.grant_replay import violations
from gateway.policy.model import Decision, Grant
from gateway.release.pipeline import Protected
from tests.unit.owner_parts import OPERATOR, org_grant, owner_parts

ORG = "Shanghai Big Data Center"
ANALYST = Requester("analyst", "li.wei@shanghai", ORG)


def _env(sql: str, seconds: float) -> Envelope:
    """A query of the analyst's through the home node, for ``seconds``."""
    return Envelope(
        f"r-{uuid.uuid4().hex[:12]}", ANALYST, "shanghai", "query", body=sql,
        deadline=time.monotonic() + seconds,
    )  # fmt: skip


def test_a_noised_result_over_the_limit_spends_its_epsilon_and_tells_no_size(
    tmp_path: Path,
) -> None:
    with owner_parts(tmp_path, 64 * 1024 + 2000) as parts:  # a 2 000-byte payload limit
        path = parts.data / "t.parquet"
        pq.write_table(pa.table({"g": [f"g{i // 10:04d}" for i in range(3000)]}), path)
        desc = DatasetDescriptor(
            "t", "T", "groups", "test", "L3", "static", str(path), "parquet",
            (ColumnSpec("g", "string"),),
        )  # fmt: skip
        parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
        grant = parts.grants.add(
            org_grant(
                "t", ORG, {"g": ("group_by",)}, dp_epsilon=0.5, dp_budget=3.0, min_group_size=5
            )
        )
        reasons = []
        for _ in range(3):
            env = _env("SELECT g, COUNT(*) AS n FROM t GROUP BY g", 20)
            answer = parts.owner.execute(env)
            (report,) = answer.owners
            assert report.error is not None and report.error.code is Code.RESOURCE_EXHAUSTED
            reasons.append(report.error.reason)
            assert answer.payload == b""
        assert parts.grants.get(grant.id).epsilon_spent == pytest.approx(1.5)
        entries = list(parts.audit.entries())
        withheld = [e.data for e in entries if e.data["kind"] == "release"]
        report = disclosure.build("anhui", "A", parts.grants, parts.audit, "", "", set())
    # an auditor's replay of the grant finds each withheld release within it
    assert violations((e.seq, e.data["kind"], e.body) for e in entries) == []
    # one entry a request, no other: the disclosure report counts three refused requests
    # and their spend (it counted each twice, as a release and a refusal)
    assert not [e for e in entries if e.data["kind"] == "query.refused"]
    assert [(u.requests, u.releases, u.refusals) for u in report.usage] == [(3, 0, 3)]
    assert report.usage[0].epsilon_spent == pytest.approx(1.5)
    assert len(withheld) == 3 and all(e["withheld"] == "over the message limit" for e in withheld)
    assert len(set(reasons)) == 1 and not any(c.isdigit() for c in reasons[0])  # no size


def test_dp_quantiles_that_could_outgrow_the_engines_result_are_refused_by_the_plan(
    tmp_path: Path,
) -> None:
    """Review (2026-12-05): a DP quantile reads every matched value; past the engine's
    result limit the statement was refused before any noise or spend, and whether it was
    told the exact number of matched rows for free (one row's value, in four questions).
    Now the plan and the dataset's public row count decide, before anything runs: the
    same answer whatever the WHERE clause."""
    with owner_parts(tmp_path) as parts:
        parts.owner.engine.result_bytes = 32 * 1024  # 4 096 values at once, for a small table
        path = parts.data / "q.parquet"
        rows = 2000
        pq.write_table(
            pa.table({"g": list(range(rows)), "w": [i % 100 for i in range(rows)]}), path
        )
        cols = (
            ColumnSpec("g", "int64", lower=0, upper=rows),
            ColumnSpec("w", "int64", lower=0, upper=100),
        )
        desc = DatasetDescriptor(
            "q", "Q", "values", "test", "L3", "static", str(path), "parquet", cols
        )
        parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
        parts.grants.add(
            org_grant(
                "q", ORG, {"g": ("filter",), "w": ("aggregate", "extremes")},
                dp_epsilon=0.5, dp_budget=100.0, min_group_size=5,
            )
        )  # fmt: skip

        def ask(sql: str) -> tuple[Code | None, str]:
            env = _env(sql, 20)
            (report,) = parts.owner.execute(env).owners
            return (report.error.code, report.error.reason) if report.error else (None, "")

        one = ask("SELECT median(w) AS m FROM q WHERE g < 10")
        assert one[0] is None  # 2 000 rows x 1 list x 16 bytes fit
        three = "SELECT median(w) AS a, median(w + 1) AS b, median(w + 2) AS c FROM q"
        few, all_rows = ask(f"{three} WHERE g < 10"), ask(f"{three} WHERE g >= 0")
        assert few == all_rows  # the same refusal however many rows match
        assert few[0] is Code.RESOURCE_EXHAUSTED and "ask fewer quantiles" in few[1]


def test_sketches_under_the_l2_noise_are_refused_by_the_plan_not_the_matched_rows(
    tmp_path: Path,
) -> None:
    """Review (2026-12-05): the bound above ran under DP only. Under the L2 noise a
    median or approx_count_distinct reads every matched value too, and the engine's
    result limit refused it exactly when the matched values passed it: ``WHERE id < T``
    found T, then ``... OR (id = victim AND salary < 5000)`` was refused iff the victim
    matched. Now any protected answer is bounded before it runs by the dataset's row
    count (and a string column's bytes over the whole table): the same outcome whatever
    the WHERE clause; a sketch that fits is answered."""
    with owner_parts(tmp_path) as parts:
        parts.owner.engine.result_bytes = 32 * 1024  # 2 048 values of 16 bytes at once
        for name, rows, tag in (("big", 8000, "t"), ("small", 1000, "t"), ("text", 1000, "x" * 40)):
            path = parts.data / f"{name}.parquet"
            table = pa.table(
                {
                    "g": list(range(rows)),
                    "w": [i % 100 for i in range(rows)],
                    "s": [f"{tag}{i}" for i in range(rows)],
                }
            )
            pq.write_table(table, path)
            cols = (
                ColumnSpec("g", "int64", lower=0, upper=rows),
                ColumnSpec("w", "int64", lower=0, upper=100),
                ColumnSpec("s", "string"),
            )
            desc = DatasetDescriptor(
                name, "Q", "values", "test", "L2", "static", str(path), "parquet", cols
            )
            parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
            columns = {
                "g": ("filter",),
                "w": ("aggregate", "extremes"),
                "s": ("aggregate", "extremes"),
            }
            parts.grants.add(org_grant(name, ORG, columns, min_group_size=5))

        def ask(sql: str) -> tuple[Code | None, str]:
            (report,) = parts.owner.execute(_env(sql, 20)).owners
            return (report.error.code, report.error.reason) if report.error else (None, "")

        for sql in (
            "SELECT median(w) AS m FROM big",
            "SELECT approx_count_distinct(w) AS d FROM big",
            "SELECT approx_count_distinct(s) AS d FROM text",
        ):
            few = ask(f"{sql} WHERE g < 10 OR (g = 999 AND g < 5000)")
            every = ask(f"{sql} WHERE g >= 0")
            assert few == every, sql  # the same refusal however many rows match
            assert few[0] is Code.RESOURCE_EXHAUSTED and "reads every matched value" in few[1]
        # 1 000 rows x 16 bytes (and 4 KB of strings) fit: answered, under the noise
        assert ask("SELECT median(w) AS m FROM small WHERE g >= 0")[0] is None
        assert ask("SELECT approx_count_distinct(s) AS d FROM small")[0] is None


def test_dp_quantiles_of_more_groups_than_fit_are_withheld_before_their_histograms(
    tmp_path: Path,
) -> None:
    """Review (2026-12-05): a DP quantile over 20 000 groups drew every group's noisy
    histogram (21 s, +280 MB) before the partial was refused for its size, spending
    nothing. Histograms are drawn for the groups the noisy row count keeps only, and
    when those cannot fit (a histogram's size is fixed by its bins) the release is
    withheld first, its epsilon spent."""
    with owner_parts(tmp_path, 64 * 1024 + 100 * 1024) as parts:  # 100 KiB of payload
        path = parts.data / "h.parquet"
        groups, per = 2000, 6
        table = pa.table(
            {
                "g": [i // per for i in range(groups * per)],
                "w": [i % 50 for i in range(groups * per)],
            }
        )
        pq.write_table(table, path)
        cols = (
            ColumnSpec("g", "int64", lower=0, upper=groups),
            ColumnSpec("w", "int64", lower=0, upper=100),
        )
        desc = DatasetDescriptor(
            "h", "H", "groups", "test", "L3", "static", str(path), "parquet", cols
        )
        parts.catalog.register(desc, by=OPERATOR, when="2026-01-01T00:00:00Z")
        grant = parts.grants.add(
            org_grant(
                "h", ORG, {"g": ("group_by", "filter"), "w": ("aggregate", "extremes")},
                dp_epsilon=0.5, dp_budget=100.0, min_group_size=5,
            )
        )  # fmt: skip
        env = _env("SELECT g, median(w) AS m FROM h GROUP BY g", 60)
        (report,) = parts.owner.execute(env).owners
        assert report.error is not None and report.error.code is Code.RESOURCE_EXHAUSTED
        assert "noised result is over the message limit" in report.error.reason
        assert parts.grants.get(grant.id).epsilon_spent == pytest.approx(0.5)
        # a few groups fit, and their medians come back
        small = _env("SELECT g, median(w) AS m FROM h WHERE g < 20 GROUP BY g", 60)
        answer = parts.owner.execute(small)
        assert answer.owners[0].ok and answer.payload


def test_add_noise_says_when_noised_quantiles_cannot_fit() -> None:
    plan = parse("SELECT g, median(w) AS m FROM t GROUP BY g")
    rows = 300
    values = pa.array([[float(i % 7)] * 12 for i in range(rows)], pa.list_(pa.float64()))
    states = {s.name: s for s in state_columns(plan, dp=True)}
    data = {"g": pa.array(range(rows))}
    for name, s in states.items():
        data[name] = values if s.kind is Kind.QHIST else pa.array([12.0] * rows)
    with pytest.raises(NoisedTooLarge):
        privacy.add_noise(
            pa.table(data), plan, epsilon=1.0, k=5, clamp={"w": (0.0, 10.0)}, max_bytes=10_000
        )
    released = privacy.add_noise(
        pa.table(data), plan, epsilon=1.0, k=5, clamp={"w": (0.0, 10.0)}, max_bytes=None
    )
    assert released.table.num_rows > 0 and released.epsilon <= 1.0


class _Slow:
    """A release whose protect step outlasts the deadline once its noise is drawn: the
    real pipeline, a DP grant of the store, an operation as small as one can be."""

    name, once_per_request, subject = "query", True, {"dataset": "t"}
    noises_in_compute = False

    def __init__(self, grant: Grant, seconds: float) -> None:
        self.grant, self.seconds = grant, seconds

    def decide(self, env: Envelope) -> Decision:
        return Decision(self.grant, 5, self.grant.dp_epsilon, {}, "L3")

    def explain(self, decision: Decision) -> object:
        raise AssertionError("not a dry run")

    def compute(self, decision: Decision, deadline: float) -> None:
        return None

    def protect(self, computed: None, decision: Decision) -> Protected:
        time.sleep(self.seconds)  # the noise is drawn here
        return Protected(b"noised", decision.epsilon)


def test_a_noised_result_past_its_deadline_spends_its_epsilon(tmp_path: Path) -> None:
    """Review (2026-12-05): past the deadline once noised, the refusal was free; how long
    the protect step took could depend on the noise (the groups it keeps)."""
    with owner_parts(tmp_path) as parts:
        grant = parts.grants.add(org_grant("t", ORG, {}, dp_epsilon=0.5, dp_budget=3.0))
        env = _env("", 0.2)
        with pytest.raises(DeadlineExceeded, match="noised"):
            parts.owner.pipeline.run(_Slow(grant, 0.4), env)
        assert parts.grants.get(grant.id).epsilon_spent == pytest.approx(0.5)
        (entry,) = [e.data for e in parts.audit.entries() if e.data["kind"] == "release"]
    assert entry["withheld"] == "past the deadline"


class _NoisedInCompute(_Slow):
    """As a PSI session or a training step: the noise is drawn while computing."""

    noises_in_compute = True

    def compute(self, decision: Decision, deadline: float) -> Protected:  # type: ignore[override]
        time.sleep(self.seconds)  # the noise is drawn here
        return Protected(b"noised", decision.epsilon)

    def protect(self, computed: Protected, decision: Decision) -> Protected:  # type: ignore[override]
        return computed


def test_noise_drawn_in_compute_is_spent_when_the_deadline_passes_after_it(
    tmp_path: Path,
) -> None:
    """Review (2026-12-05): PSI and training draw their noise in compute, and the
    deadline check after compute was free for them: whether a DP app step finished in
    time (which its rows can decide) reached the home free, as often as asked."""
    with owner_parts(tmp_path) as parts:
        grant = parts.grants.add(org_grant("t", ORG, {}, dp_epsilon=0.5, dp_budget=3.0))
        env = _env("", 0.2)
        with pytest.raises(DeadlineExceeded, match="noised"):
            parts.owner.pipeline.run(_NoisedInCompute(grant, 0.4), env)
        assert parts.grants.get(grant.id).epsilon_spent == pytest.approx(0.5)


class _TooManyGroups(_NoisedInCompute):
    """As a DP join whose kept groups' sums cannot fit: known once its counts are noised."""

    def compute(self, decision: Decision, deadline: float) -> Protected:  # type: ignore[override]
        raise NoisedTooLarge("the sums do not fit", epsilon=0.3)


def test_noise_drawn_in_compute_that_cannot_fit_is_withheld_with_what_it_drew(
    tmp_path: Path,
) -> None:
    """Review (2026-12-05): a DP join's NoisedTooLarge from its compute step was caught
    only around protect, so the session ended a free refusal; it charges what its noise
    was drawn with (the session's epsilon), not the grant's."""
    with owner_parts(tmp_path) as parts:
        grant = parts.grants.add(org_grant("t", ORG, {}, dp_epsilon=0.5, dp_budget=3.0))
        env = _env("", 5)
        with pytest.raises(ResourceExhausted, match="noised result is over the message limit"):
            parts.owner.pipeline.run(_TooManyGroups(grant, 0.0), env)
        assert parts.grants.get(grant.id).epsilon_spent == pytest.approx(0.3)
