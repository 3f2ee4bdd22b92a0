"""The home's kept answers: keyed by the plan and every partial's bytes, in order."""

from __future__ import annotations

import pyarrow as pa

from federation.partials import to_ipc
from federation.sql import parse
from gateway.engine import Engine
from gateway.roles.home import Home


def _partial(keys: list[str], sums: list[int]) -> pa.Table:
    n = pa.array([1] * len(keys), pa.int64())
    c = pa.array([1] * len(keys), pa.int64())
    return pa.table({"g": keys, "__n": n, "__c_x": c, "__s_x": pa.array(sums, pa.int64())})


def test_an_answer_is_kept_per_plan_and_partial_bytes_and_never_when_noisy() -> None:
    engine = Engine(1)
    # Only the engine's empty scratch database is used by the merge (HAVING and the like).
    home = Home("home", None, None, None, None, None, engine.run_on_table)  # type: ignore[arg-type]
    plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g")
    a, b = _partial(["p", "q"], [1, 2]), _partial(["p"], [10])
    pa_, pb_ = to_ipc(a), to_ipc(b)
    try:
        first, first_ipc = home._answer(plan, [a, b], [pa_, pb_], noisy=False)
        assert first.to_pylist() == [{"g": "p", "s": 11}, {"g": "q", "s": 2}]
        again, again_ipc = home._answer(plan, [a, b], [pa_, pb_], noisy=False)
        assert again is first and again_ipc == first_ipc  # kept
        swapped, _ = home._answer(plan, [b, a], [pb_, pa_], noisy=False)
        assert swapped is not first and swapped.equals(first)  # another key, same content
        c = _partial(["p"], [20])
        other, _ = home._answer(plan, [a, c], [pa_, to_ipc(c)], noisy=False)
        assert other.to_pylist()[0]["s"] == 21
        other_plan = parse("SELECT g, SUM(x) AS s FROM t GROUP BY g ORDER BY g DESC")
        desc, _ = home._answer(other_plan, [a, b], [pa_, pb_], noisy=False)
        assert [r["g"] for r in desc.to_pylist()] == ["q", "p"]
        noisy1, _ = home._answer(plan, [a, b], [pa_, pb_], noisy=True)
        noisy2, _ = home._answer(plan, [a, b], [pa_, pb_], noisy=True)
        assert noisy1 is not noisy2 and noisy1 is not first  # computed, never kept
    finally:
        engine.close()
