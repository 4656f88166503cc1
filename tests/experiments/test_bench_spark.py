"""The figures the Spark benchmark prints: growth per user against the smallest size, largest completed size."""

from __future__ import annotations

from experiments.bench_spark import growth, largest_completed, last_line, summary


def _row(users: int, job: str, engine: str, seconds: float, *, ok: bool = True) -> dict:
    row = {"users": users, "events": users * 10, "job": job, "engine": engine, "seconds": seconds}
    row.update({"ok": ok, "peak_gib": users / 1000})
    return row if ok else {**row, "error": f"MemoryError at {users}"}


ROWS = [
    _row(1000, "score", "pandas", 10.0),  # 10 ms a user: the reference
    _row(2000, "score", "pandas", 20.0),  # still 10 ms a user: linear, growth 1
    _row(4000, "score", "pandas", 60.0),  # 15 ms a user: growth 1.5
    _row(1000, "recommend", "pandas", 5.0),
    _row(2000, "recommend", "pandas", 10.0),
    _row(4000, "recommend", "pandas", 99.0, ok=False),  # out of memory at the largest size
    _row(1000, "score", "spark", 40.0, ok=False),  # the smallest size failed: 2000 is the reference
    _row(2000, "score", "spark", 30.0),
    _row(4000, "score", "spark", 30.0),  # half the seconds a user of 2000
]


def test_growth_is_seconds_per_user_relative_to_the_smallest_size():
    assert growth(ROWS, job="score", engine="pandas") == {1000: 1.0, 2000: 1.0, 4000: 1.5}


def test_growth_leaves_out_failures_and_starts_at_the_smallest_success():
    assert growth(ROWS, job="score", engine="spark") == {2000: 1.0, 4000: 0.5}
    assert growth(ROWS, job="recommend", engine="pandas") == {1000: 1.0, 2000: 1.0}
    assert growth(ROWS, job="features", engine="pandas") == {}


def test_largest_completed_needs_every_job_of_the_engine():
    assert largest_completed(ROWS, jobs=["score"]) == 4000
    assert largest_completed(ROWS, jobs=["score", "recommend"]) == 2000
    assert largest_completed(ROWS, jobs=["score"], engine="spark") == 4000
    assert largest_completed(ROWS[5:6], jobs=["recommend"]) is None


def test_summary_names_largest_pandas_size_and_each_failure():
    lines = summary(ROWS, sizes=[1000, 2000, 4000], jobs=["score", "recommend"], engines=["pandas", "spark"])
    assert lines[-3].endswith("score, recommend): 2,000 users (peak 2.00 GiB, within 24 GiB)")
    assert lines[-2:] == [
        "failed: 4,000 users, recommend pandas: MemoryError at 4000",
        "failed: 1,000 users, score spark: MemoryError at 1000",
    ]
    score_4000 = next(line.split() for line in lines if line.split()[:3] == ["4,000", "40,000", "score"])
    assert score_4000[3:] == ["60.0", "4.00", "30.0", "4.00", "0.50x", "1.50", "0.50"]


def test_summary_without_a_pandas_success_says_none():
    lines = summary(ROWS[5:6], sizes=[4000], jobs=["recommend"], engines=["pandas"])
    assert "completed for every job (recommend): none" in lines[-2]
    assert lines[1].split()[3:] == ["failed", "4.00", "-", "-", "-", "-", "-"]


def test_last_line_skips_box_borders_and_falls_back_to_the_exit_code():
    boxed = "Usage: rebuy sample\n╭─ Error ─╮\n│ Invalid value for '--days' │\n╰─────────╯\n"
    assert last_line(boxed, 2) == "Invalid value for '--days'"
    assert last_line("Traceback\nMemoryError\n", 1) == "MemoryError"
    assert last_line("", -9) == "exit code -9"
