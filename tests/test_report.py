"""The helpers every benchmark report uses: provenance header, atomic figure files."""

import pytest


def test_report_provenance_lines_flag_an_unfinished_run():
    from attsolver._report import provenance_lines

    rep = {"command": "attsolver bench x", "date": "2026-01-01 00:00 UTC", "complete": True, "wall_time_s": 90.0,
           "machine": {"cpus": 2, "torch": "2.13.0", "torch_threads": 1, "python": "3.11"}}
    assert provenance_lines(rep, software=", lib 1.0") == [
        "Produced by `attsolver bench x` on 2026-01-01 00:00 UTC.",
        "Machine: 2 CPUs, torch 2.13.0 (1 thread), lib 1.0, Python 3.11; total 1.5 min."]
    rep["complete"] = False
    assert "incomplete: the run stopped before every seed finished" in provenance_lines(rep, unfinished="seed")[0]


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
