"""The helpers every benchmark report uses: provenance header, atomic figure files, the one
writer and its non-finite policy, the timing loop and the equal-accuracy speed-up."""

import json
import math

import pytest

from _scripts import load_script


def _suite():
    return load_script("benchmarks/_suite.py")


def test_report_provenance_lines_flag_an_unfinished_run():
    provenance_lines = _suite().provenance_lines

    rep = {"command": "attsolver bench x", "date": "2026-01-01 00:00 UTC", "complete": True, "wall_time_s": 90.0,
           "machine": {"cpus": 2, "torch": "2.13.0", "torch_threads": 1, "python": "3.11"}}
    assert provenance_lines(rep, software=", lib 1.0") == [
        "Produced by `attsolver bench x` on 2026-01-01 00:00 UTC.",
        "Machine: 2 CPUs, torch 2.13.0 (1 thread), lib 1.0, Python 3.11; total 1.5 min."]
    rep["complete"] = False
    assert "incomplete: the run stopped before every seed finished" in provenance_lines(rep, unfinished="seed")[0]
    rep.update(complete=True, code_commit="abc1234+dirty")  # the record names the code that ran
    assert provenance_lines(rep)[0] == "Produced by `attsolver bench x` on 2026-01-01 00:00 UTC, code at `abc1234+dirty`."


def test_a_run_record_names_the_timing_environment_and_the_page_shows_it(monkeypatch):
    """Thread and allocator variables change what a timing measures and are not on the command line."""
    suite = _suite()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4294967296")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    rec = suite.Run("x", ["--quick"]).record
    assert rec["machine"]["env"]["MALLOC_TRIM_THRESHOLD_"] == "4294967296"
    assert "MALLOC_MMAP_THRESHOLD_" not in rec["machine"]["env"]
    rec.update(command="attsolver bench x --quick", date="2026-01-01 00:00 UTC", complete=True, wall_time_s=1.0)
    assert suite.provenance_lines(rec)[0].startswith(
        "Produced by `MALLOC_TRIM_THRESHOLD_=4294967296 attsolver bench x --quick` on")
    for k in suite.TIMING_ENV:
        monkeypatch.delenv(k, raising=False)
    assert "env" not in suite.Run("x", []).record["machine"]


def test_a_run_record_names_the_commit_it_ran():
    suite = _suite()
    rec = suite.Run("x", ["--quick"]).record
    assert rec["code_commit"] == suite.code_commit()
    assert rec["code_commit"] is None or rec["code_commit"].split("+")[0].isalnum()


def test_save_png_writes_atomically_and_closes_the_figure(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attsolver._report import save_png

    path = tmp_path / "plot.png"
    path.write_bytes(b"committed")
    fig = plt.figure()
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("plot failed")))
    with pytest.raises(RuntimeError, match="plot failed"):
        save_png(fig, path, dpi=50)
    assert path.read_bytes() == b"committed" and list(tmp_path.iterdir()) == [path]  # nothing replaced or left
    monkeypatch.undo()
    save_png(fig, path, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)


def _refuse_constants(text: str):
    """``json.loads`` that fails on NaN / Infinity (which are not JSON)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_the_writer_never_writes_nan_and_renders_what_it_wrote(tmp_path):
    s = _suite()
    run = s.Run("demo", ["--quick"], quick=True)
    report = run.report(rows=[{"mean": float("nan"), "std": float("inf"), "err": -math.inf, "n": (1, 2.5)}],
                        values=[1.0, float("nan")])
    seen = []

    def markdown(rep):
        seen.append(rep)
        return "# demo\n\n" + "\n".join(s.provenance_lines(rep)) + f"\n\nmean {s.pm(rep['rows'][0]['mean'])}\n"

    def figures(rep):
        fig, ax = s.figure(dpi=40)
        ax.plot(rep["values"])
        yield "demo.png", fig

    written = s.write_report(tmp_path, "demo", run.stamp(report, complete=True), markdown, figures)
    text = (tmp_path / "demo.json").read_text()
    data = _refuse_constants(text)
    assert data["rows"] == [{"mean": None, "std": None, "err": None, "n": [1, 2.5]}]
    assert data["values"] == [1.0, None] and data["plots"] == ["demo.png"] and data == written
    # the record: command, date, machine with the load average, completeness, wall time
    assert data["suite"] == "demo" and data["command"] == "attsolver bench demo --quick" and data["quick"]
    assert data["complete"] and data["wall_time_s"] >= 0 and {"cpus", "torch", "load_start", "load_end"} <= set(
        data["machine"])
    assert seen == [data]  # the tables are rendered from exactly what the JSON holds
    assert (tmp_path / "demo.md").read_text().endswith("mean —\n")
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
    # the policy itself: nothing the json module would write as NaN / Infinity survives
    assert _refuse_constants(s.json_text({"a": [float("nan"), (float("-inf"), 2)]})) == {"a": [None, [None, 2]]}


def test_timings_warm_up_apart_interleave_and_check_the_first_output():
    s = _suite()
    calls, checked = [], []
    fns = {"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}
    t = s.timings(fns, rounds=3, warmup=1, alternate=True, first=lambda name, out: checked.append((name, out)))
    assert checked == [("a", 1), ("b", 2)]
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rounds in alternating order
    for v in t.values():
        assert len(v.wall) == len(v.cpu) == 3 and v.first_s is not None
        assert v.min() <= v.median() and v.spread()[0] <= v.spread()[1]
        assert v.summary()["rounds"] == 3


def test_timings_keep_the_garbage_collector_out_of_the_timed_calls():
    """No collection pass inside a timed call (timeit's rule): the collector is off while a timed
    function runs, on during the warm-up, and restored afterwards, also when a call raises."""
    import gc

    s = _suite()
    seen = []
    s.timings({"a": lambda: seen.append(gc.isenabled())}, rounds=2, warmup=1)
    assert seen == [True, False, False] and gc.isenabled()

    def boom():
        if not gc.isenabled():
            raise RuntimeError("in a timed call")
    with pytest.raises(RuntimeError, match="timed call"):
        s.timings({"boom": boom}, rounds=1)
    assert gc.isenabled()
    gc.disable()
    try:
        s.timings({"a": lambda: None}, rounds=1)
        assert not gc.isenabled()  # restored as it was: off
    finally:
        gc.enable()


def test_speedup_reads_the_classical_front_through_the_library():
    s = _suite()
    # a fourth-order ladder: error k^-4 at cost k; a run of error 3^-4 costing 0.5 is a 6x speed-up
    ks = [1, 2, 4, 8]
    value, kind, cost = s.speedup([k ** -4.0 for k in ks], ks, 3.0 ** -4, 0.5)
    assert kind == "interpolated" and cost == pytest.approx(3.0) and value == pytest.approx(6.0)
    assert s.speedup([1.0, 0.5], [1.0, 2.0], 2.0, 4.0)[:2] == (0.25, "cheapest")  # an upper bound
    assert s.speedup([1.0, 0.5], [1.0, 2.0], None, 4.0) == (None, "unreached", None)


def test_case_suite_runs_every_case_in_order_and_renders_from_the_json(tmp_path):
    suite = _suite()
    seen = []

    def run_case(case, quick, run):
        seen.append((case, quick))
        return {"case": case, "square": case * case}

    def markdown(report):
        return "".join(f"{c['case']}:{c['square']} " for c in report["cases"]) + f"k={report['k']}\n"

    out = tmp_path / "out"
    rc = suite.case_suite("demo", "doc", ["--quick", "--out", str(out)], quick="smoke",
                          cases=lambda quick: [3, 1, 2] if quick else [], run_case=run_case, markdown=markdown, k=7)
    assert rc == 0 and seen == [(3, True), (1, True), (2, True)]
    report = json.loads((out / "demo.json").read_text())
    assert [c["square"] for c in report["cases"]] == [9, 1, 4]
    assert report["k"] == 7 and report["complete"] is True and report["quick"] is True
    assert report["command"] == f"attsolver bench demo --quick --out {out}"
    text = (out / "demo.md").read_text()
    assert text == "3:9 1:1 2:4 k=7\n"
    (out / "demo.md").write_text("stale")
    seen.clear()
    assert suite.case_suite("demo", "doc", ["--render", "--out", str(out)], quick="smoke", cases=lambda q: [5],
                            run_case=run_case, markdown=markdown, k=0) == 0
    assert seen == [] and (out / "demo.md").read_text() == text  # rendered from the JSON, nothing re-run


def test_worker_trees_run_one_worker_per_checkout_and_close_them(tmp_path):
    """The before/after suites' plumbing: each tree's worker sees only its own checkout on
    PYTHONPATH, answers one JSON line per request, and a worker that died is an error, not a hang."""
    suite = _suite()
    script = tmp_path / "bench" / "echo.py"
    script.parent.mkdir()
    script.write_text(
        "import json, os, sys\n"
        "for line in sys.stdin:\n"
        "    msg = json.loads(line)\n"
        "    if msg.get('die'):\n"
        "        sys.exit(3)\n"
        "    print(json.dumps({'got': msg, 'path': os.environ['PYTHONPATH'], 'omp': os.environ.get('OMP_NUM_THREADS')}),"
        " flush=True)\n")
    before = tmp_path / "old"
    with suite.worker_trees(script, before, env={"OMP_NUM_THREADS": "1"}) as trees:
        assert list(trees) == ["before", "after"]
        a, b = trees["before"].ask(x=1), trees["after"].ask(case=[1, 2])
        assert a == {"got": {"x": 1}, "path": str(before.resolve()), "omp": "1"}
        assert b["got"] == {"case": [1, 2]} and b["path"] == str(tmp_path)  # the script's checkout root
        with pytest.raises(RuntimeError, match="the worker stopped"):
            trees["before"].ask(die=True)
    assert all(t.proc.poll() is not None for t in trees.values())  # closed on leaving the block
    with suite.worker_trees(script, None, drop=("OMP_NUM_THREADS",)) as trees:
        assert list(trees) == ["after"] and trees["after"].ask(y=2)["omp"] is None
