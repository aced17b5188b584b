"""Issue 26's hostile-input campaign: each attack run in a fresh process against a source
tree, classified, and the tables of two trees side by side (before / after a change).

    PYTHONPATH=. python benchmarks/faults_hostile.py --before /path/to/old/checkout \\
        --out benchmarks/results                     # writes faults_hostile.md and .json

A plain script (the common layer ``benchmarks/_suite.py`` had not landed in main when it was
written).  Every case runs as ``python -c SNIPPET`` or ``python -m attsolver ...`` with
``PYTHONPATH`` set to the tree, a wall limit of ``--limit`` seconds (60), an address-space
limit of 4 GiB (so the old code's 10^9-output-time allocations fail instead of taking the
machine down) and its peak memory read from ``getrusage``.  Outcomes:

* ``refused``: a clear error (the expected phrase; exit 2 for the CLI), or the right answer;
* ``silent-wrong``: a result (or exit 0) where an error or another value was due;
* ``hang``: still running at the limit;
* ``traceback`` / ``unclear``: a traceback from the CLI, or an error that is not ours or is
  misleading (for a Python call: an exception without the expected phrase);
* ``exit-0-on-failure``: the command exited 0 although it failed or was interrupted;
* ``over-allocation``: the reader's peak memory passed 16x the file's size (+ its baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_USER = textwrap.dedent('''
    import sys, torch
    def boom(t, y):
        if float(t) > 0.5:
            raise ZeroDivisionError("my bad")
        return -y
    def quit0(t, y):
        if float(t) > 0.5:
            sys.exit(0)
        return -y
    def sample(n, generator):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)
''')

_PY_HEAD = "import torch, numpy as np\nfrom attsolver import solve\nf = lambda t, y: -y\n"


def _py(body: str) -> list[str]:
    return [sys.executable, "-c", _PY_HEAD + textwrap.dedent(body)]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "attsolver", *args]


def cases(work: Path) -> list[dict]:
    """(category, name, argv, how to judge it): ``ok`` is the phrase of a clear refusal (or
    ``"RIGHT"`` printed by a snippet that checks the value itself)."""
    u = work / "user.py"
    h = work / "hostile.h5"
    big = work / "big.h5"
    o = work / "out"
    return [
        # (1) HDF5
        dict(cat="hdf5", name="re-sealed file, byte 1577 bit 3 flipped: load_h5",
             argv=_py(f"from attsolver.data import load_h5\nload_h5({str(h)!r})"), ok="not a readable HDF5"),
        dict(cat="hdf5", name="re-sealed file: attsolver data info, Ctrl-C after 15 s", argv=_cli("data", "info", str(h)),
             ok="interrupted", sigint_after=15.0),
        dict(cat="hdf5", name="sealed small file declaring a 0.88 GB dataset: load_h5",
             argv=_py(f"from attsolver.data import load_h5\nload_h5({str(big)!r})"), ok="more than the reader allocates",
             alloc_file=big),
        # (2)(5)(6) one validation / budget path
        dict(cat="budgets", name="CLI solve --t-final 1000 --dt 10 --step 1e-7 (progress on)",
             argv=_cli("solve", "lorenz63", "--t-final", "1000", "--dt", "10", "--step", "1e-7", "-o", str(o / "s.h5")),
             ok="max_steps"),
        dict(cat="budgets", name="CLI data generate --dt 10 --step-size 1e-7 (progress on)",
             argv=_cli("data", "generate", "lorenz63", "--n", "2", "--t-final", "1000", "--dt", "10", "--step-size",
                       "1e-7", "-o", str(o / "g.h5")), ok="max_steps"),
        dict(cat="budgets", name="CLI solve with 10^9 output times (--dt 1e-6)",
             argv=_cli("solve", "lorenz63", "--t-final", "1000", "--dt", "1e-6", "-o", str(o / "s9.h5")),
             ok="output times"),
        dict(cat="budgets", name="CLI data generate with 10^9 output times",
             argv=_cli("data", "generate", "lorenz63", "--n", "2", "--t-final", "1000", "--dt", "1e-6",
                       "-o", str(o / "g9.h5")), ok="output times"),
        dict(cat="budgets", name="solve: 2000 times x 10^6 components (16 GB result)",
             argv=_py("solve(f, torch.ones(10**6, dtype=torch.float64), torch.linspace(0, 1, 2000, dtype=torch.float64))"),
             ok="max_output_bytes"),
        dict(cat="budgets", name="dopri5 over t=[0, 1e300], options max_wall_s=20",
             argv=_py("solve(f, torch.ones(2, dtype=torch.float64), torch.tensor([0., 1e300], dtype=torch.float64), "
                      "method='dopri5', options={'max_wall_s': 20})"), ok="wall-time budget"),
        dict(cat="budgets", name="solve(progress=True) with y0 a list",
             argv=_py("solve(f, [1.0, 2.0], torch.linspace(0, 1, 5, dtype=torch.float64), progress=True)"),
             ok="y0 must be a torch.Tensor"),
        dict(cat="budgets", name="solve(progress=True) with y0 None",
             argv=_py("solve(f, None, torch.linspace(0, 1, 5, dtype=torch.float64), progress=True)"),
             ok="y0 must be a torch.Tensor"),
        dict(cat="budgets", name="solve(progress=True) with a non-monotone t",
             argv=_py("solve(f, torch.ones(1, dtype=torch.float64), torch.tensor([0., 1., .5, 2.], "
                      "dtype=torch.float64), progress=True)"), ok="strictly monotone"),
        # (3)
        dict(cat="budgets", name="max_steps=10**30, step_size=1e-20 over [0, 1]",
             argv=_py("print(solve(f, torch.ones(1, dtype=torch.float64), torch.tensor([0., 1.], dtype=torch.float64), "
                      "step_size=1e-20, options={'max_steps': 10**30}))"), ok="steps"),
        # (4) precision
        dict(cat="precision", name="dopri5 in bfloat16",
             argv=_py("y = solve(f, torch.ones(1, dtype=torch.bfloat16), torch.tensor([0., 1.]), method='dopri5')\n"
                      "print('RIGHT' if abs(float(y[-1]) - 0.3679) < 0.02 else float(y[-1]))"), ok="bfloat16"),
        dict(cat="precision", name="etdrk4 in float16 (Burgers)",
             argv=_py("from attsolver.systems import make_system\ns = make_system('burgers')\n"
                      "y0 = s.sample_initial(2).half()\nsolve(s, y0, torch.tensor([0., .01]), method='etdrk4')"),
             ok="does not support y0 of dtype torch.float16"),
        dict(cat="precision", name="ifrk4 in float16 (Burgers)",
             argv=_py("from attsolver.systems import make_system\ns = make_system('burgers')\n"
                      "y0 = s.sample_initial(2).half()\nsolve(s, y0, torch.tensor([0., .01]), method='ifrk4')"),
             ok="does not support y0 of dtype torch.float16"),
        dict(cat="precision", name="rk4 in complex32",
             argv=_py("solve(f, torch.ones(2, dtype=torch.complex32), torch.tensor([0., 1.]))"), ok="complex32"),
        # (7)(8) user code, interrupts
        dict(cat="cli", name="--rhs f raises ZeroDivisionError",
             argv=_cli("data", "generate", "--rhs", f"{u}:boom", "--init", f"{u}:sample", "--n", "2", "--t-final", "2",
                       "--dt", "0.1", "--no-progress", "-o", str(o / "b.h5")), ok="your f(t, y) raised"),
        dict(cat="cli", name="--rhs f calls sys.exit(0)",
             argv=_cli("data", "generate", "--rhs", f"{u}:quit0", "--init", f"{u}:sample", "--n", "2", "--t-final", "2",
                       "--dt", "0.1", "--no-progress", "-o", str(o / "q.h5")), ok="sys.exit(0)"),
        dict(cat="cli", name="Ctrl-C swallowed during the final write of data generate",
             argv=[sys.executable, "-c", textwrap.dedent(f'''
                 import os, signal, sys
                 import attsolver.cli.data as d
                 from attsolver.cli import main
                 real = d.save_h5
                 def save(*a, **k):
                     p = real(*a, **k)
                     try:
                         os.kill(os.getpid(), signal.SIGINT)
                     except KeyboardInterrupt:
                         pass
                     return p
                 d.save_h5 = save
                 sys.exit(main(["data", "generate", "lorenz63", "--n", "2", "--t-final", "1", "--dt", "0.1",
                                "--no-progress", "-o", {str(o / "i.h5")!r}]))''')], ok="interrupted"),
        # (9) compare
        dict(cat="compare", name="compare name='../x'",
             argv=_py(f"from attsolver import compare\ncompare(f, torch.ones(2, 2, dtype=torch.float64), "
                      f"torch.linspace(0, 1, 11, dtype=torch.float64), method='rk4', step_size=0.1, rounds=1, "
                      f"progress=False, lyapunov_exponent=None, out={str(o / 'c')!r}, name='../x')\n"
                      f"import os; print('WROTE OUTSIDE' if os.path.exists({str(o / 'x.json')!r}) else '')"),
             ok="name must be a file name"),
        dict(cat="compare", name="compare out= an existing file",
             argv=_py(f"from attsolver import compare\nopen({str(work / 'afile')!r}, 'w').write('x')\n"
                      f"compare(f, torch.ones(2, 2, dtype=torch.float64), torch.linspace(0, 1, 11, dtype=torch.float64), "
                      f"method='rk4', step_size=0.1, rounds=1, progress=False, lyapunov_exponent=None, "
                      f"out={str(work / 'afile')!r})"), ok="out must be a folder"),
        dict(cat="compare", name="compare with NaN in reference",
             argv=_py("from attsolver import compare\nt = torch.linspace(0, 1, 11, dtype=torch.float64)\n"
                      "ref = torch.exp(-t)[None, :, None].expand(2, 11, 2).clone(); ref[1, 5, 0] = float('nan')\n"
                      "compare(f, torch.ones(2, 2, dtype=torch.float64), t, reference=ref, method='rk4', step_size=0.1, "
                      "rounds=1, progress=False, lyapunov_exponent=None)"), ok="reference contains NaN"),
        dict(cat="compare", name="compare dtype=float16",
             argv=_py("from attsolver import compare\ncompare(f, torch.ones(2, 2, dtype=torch.float64), "
                      "torch.linspace(0, 1, 11, dtype=torch.float64), method='rk4', step_size=0.1, rounds=1, "
                      "progress=False, lyapunov_exponent=None, dtype=torch.float16)"), ok="float32 or float64"),
        # (10)
        dict(cat="gradients", name="scipy_dop853 with y0.requires_grad",
             argv=_py("y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)\n"
                      "y = solve(f, y0, torch.linspace(0, 1, 5, dtype=torch.float64), method='scipy_dop853')\n"
                      "print('RIGHT' if y.requires_grad else 'NO GRAD')"), ok="not differentiable"),
    ]


def prepare(work: Path, tree: Path) -> None:
    """The user file, the re-sealed hostile file and the size-lying file (made with ``tree``)."""
    (work / "out").mkdir(parents=True, exist_ok=True)
    (work / "user.py").write_text(_USER)
    env = dict(os.environ, PYTHONPATH=str(tree))
    src = work / "small.h5"
    subprocess.run(_cli("data", "generate", "lorenz63", "--n", "2", "--t-final", "1", "--dt", "0.1", "--no-progress",
                        "-o", str(src)), check=True, env=env, capture_output=True, cwd=work)
    script = textwrap.dedent(f'''
        import h5py, numpy as np
        from attsolver.data.h5 import seal_file, SCHEMA
        data = bytearray(open({str(src)!r}, "rb").read()); data[1577] ^= 1 << 3
        open({str(work / "hostile.h5")!r}, "wb").write(bytes(data)); seal_file({str(work / "hostile.h5")!r})
        with h5py.File({str(work / "big.h5")!r}, "w", userblock_size=512) as f:
            f.attrs.update({{"schema": SCHEMA, "schema_version": 1, "config": "{{}}",
                            "system": '{{"name": "x", "params": {{}}}}', "noise_level": 0.0}})
            f["t"] = np.linspace(0, 1, 11)
            f.create_dataset("y", shape=(2000, 11, 5000), dtype="f8", chunks=(1, 11, 100))
        seal_file({str(work / "big.h5")!r})
    ''')
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=work)


#: address-space limit of every case: an attack that makes the old code allocate tens of GB
#: (10^9 output times) fails with MemoryError instead of taking a shared machine down
MEMORY_LIMIT = 4 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(case: dict, tree: Path, limit: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # cwd: the work folder, never a checkout (python -c puts the cwd before PYTHONPATH)
    proc = subprocess.Popen(case["argv"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=case["cwd"], preexec_fn=_limit_memory)
    timed_out = False
    try:
        if "sigint_after" in case:
            try:
                out, err = proc.communicate(timeout=case["sigint_after"])
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=limit)
        else:
            out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return dict(outcome=classify(case, proc.returncode, out, err, timed_out, peak if peak > before * 1024 else None),
                rc=proc.returncode, wall_s=round(wall, 1), last_line=(err.strip().splitlines() or [""])[-1][:200],
                stdout=out.strip()[-120:])


def classify(case: dict, rc: int, out: str, err: str, timed_out: bool, peak: int | None) -> str:
    if timed_out:
        return "hang"
    if "alloc_file" in case and peak is not None:
        size = Path(case["alloc_file"]).stat().st_size
        if peak > 16 * size + (400 << 20):  # 400 MiB: the interpreter, torch and h5py themselves
            return "over-allocation"
    text = out + err
    is_cli = case["argv"][1:3] == ["-m", "attsolver"] or "from attsolver.cli import main" in case["argv"][-1]
    last = (err.strip().splitlines() or [""])[-1]
    if "RIGHT" in out:
        return "refused"
    if is_cli and case["ok"] in text and rc != 0 and "Traceback" not in err:
        return "refused"
    if not is_cli and case["ok"] in last:  # a Python call: our exception, with the phrase, is the refusal
        return "refused"
    if rc == 0 or rc is None:
        return "exit-0-on-failure" if is_cli else "silent-wrong"
    if is_cli and "Traceback" in err:
        return "traceback"
    return "unclear"  # an error, but not ours or not saying what is wrong


OUTCOMES = ("refused", "silent-wrong", "hang", "traceback", "unclear", "exit-0-on-failure", "over-allocation")


def to_markdown(report: dict) -> str:
    lines = ["# Hostile-input campaign (issue 26)", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}; limit {report['limit_s']:g} s per case; "
             f"machine load average at start {report['load']}.", "",
             "Per category: cases, then before → after for each outcome (`refused` counts clear errors and right "
             "answers).", "",
             "| category | cases | " + " | ".join(OUTCOMES) + " |", "|---|---|" + "---|" * len(OUTCOMES)]
    cats = sorted({r["cat"] for r in report["rows"]}, key=[r["cat"] for r in report["rows"]].index)
    for cat in cats + ["all"]:
        rows = [r for r in report["rows"] if cat in ("all", r["cat"])]
        cells = []
        for o in OUTCOMES:
            b = sum(r["before"]["outcome"] == o for r in rows) if report["before_tree"] else None
            a = sum(r["after"]["outcome"] == o for r in rows)
            cells.append(f"{b} → {a}" if b is not None else str(a))
        lines.append(f"| {'**all**' if cat == 'all' else cat} | {len(rows)} | " + " | ".join(cells) + " |")
    lines += ["", "| category | case | before | after | after: wall s, last line |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        b = r["before"]["outcome"] + f" ({r['before']['wall_s']:g} s)" if r["before"] else "-"
        lines.append(f"| {r['cat']} | {r['name']} | {b} | {r['after']['outcome']} | {r['after']['wall_s']:g} s: "
                     f"{r['after']['last_line'].replace('|', '/')[:140]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, default=None, help="a checkout of the code before the change")
    p.add_argument("--after", type=Path, default=REPO, help="the tree under test (default: this checkout)")
    p.add_argument("--limit", type=float, default=60.0, help="seconds before a case counts as a hang")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--only", default=None, help="run the cases whose name contains this text")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, args.after)
        for case in cases(work):
            if args.only and args.only not in case["name"]:
                continue
            case["cwd"] = str(work)
            row = {"cat": case["cat"], "name": case["name"], "before": None}
            if args.before is not None:
                row["before"] = run_case(case, args.before, args.limit)
            row["after"] = run_case(case, args.after, args.limit)
            print(f"{case['cat']:10s} {case['name'][:60]:60s} {row['before'] and row['before']['outcome']} -> "
                  f"{row['after']['outcome']} ({row['after']['wall_s']} s)", flush=True)
            rows.append(row)
    report = {"command": "python benchmarks/faults_hostile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "limit_s": args.limit,
              "load": [round(v, 2) for v in os.getloadavg()], "before_tree": str(args.before) if args.before else None,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults_hostile.json").write_text(json.dumps(report, indent=1))
    (args.out / "faults_hostile.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
