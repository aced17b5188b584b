"""Latent classifier guidance on an offline semantic latent space (procedural shapes + VAE).

A small convolutional VAE is trained on rendered shapes whose four attributes (shape, size,
position, fill) are known exactly; its standardised posterior means are the latent space.
Per seed, a latent DDPM and a time-conditioned latent classifier are trained on those
latents, and logistic directions are fitted for latent arithmetic.  An independent CNN,
trained on rendered images (never on latents), judges every decoded result against the
ground truth.

* Conditional generation: attribute accuracy for random target combinations and the Fréchet
  distance in the judge's feature space to real rendered images — unguided DDPM, LCG, and
  unguided DDPM + latent arithmetic towards the same targets.
* Sequential editing of 1-4 attributes of encoded real images (shape, then size, position,
  fill; every target differs from the source): accuracy of the edited attributes,
  preservation of the unedited ones, all four as intended, latent and image distance to the
  source — LCG with both preservation terms, with the source pull only, with the hold term
  only, without preservation, and latent arithmetic.

    attsolver bench guidance [--quick] [--seeds 5] [--out benchmarks/results]
    python benchmarks/guidance.py --quick
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from attsolver.guidance import (LatentDDPM, LatentGuidance, LogisticDirections, NoiseSchedule, TimeLatentClassifier,
                                attribute_agreement, ddim_sample, frechet_distance, latent_arithmetic,
                                sequential_arithmetic, train_ddpm, train_latent_classifier)
from attsolver.guidance.shapes import ATTRIBUTES, build_shapes_demo, make_shapes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's root: benchmarks._suite
from benchmarks._suite import Progress, Run, figure, header, mean_std, parser, pm, write_report  # noqa: E402

SIZES = {  # mode -> sizes of everything trained and evaluated
    "quick": dict(seeds=2, n_train=4000, vae_epochs=12, judge_steps=500, ddpm_steps=1500, clf_steps=1000,
                  n_gen=200, n_edit=100, n_ref=1000),
    "full": dict(seeds=5, n_train=6000, vae_epochs=16, judge_steps=800, ddpm_steps=3000, clf_steps=2000,
                 n_gen=500, n_edit=250, n_ref=2000),
}
# A linear schedule: the cosine schedule's clipped last step (ᾱ ≈ 2e-9) amplifies ε errors ~10^4-fold
# in DDIM's first step, and the unguided samples diverged with it.  Scales: chosen on a separate
# trial run (generation λ = 1, 2, 5 are all reported; editing λ = 10 with λ_h = 5, λ_s = 0.05, t₀ = 500).
GUIDE = dict(T=1000, schedule="linear", latent_dim=12, vae_beta=0.1, hidden=128, depth=2, gen_steps=50,
             gen_scales=[1.0, 2.0, 5.0], edit_steps=25, t0=500, scale=10.0, hold_scale=5.0, source_scale=0.05)
EDIT_ORDER = ["shape", "size", "position", "fill"]
EDIT_METHODS = {  # name -> (source_scale on?, hold_scale on?) ; None = latent arithmetic
    "lcg_preserve": (True, True), "lcg_pull_only": (True, False), "lcg_hold_only": (False, True),
    "lcg_no_preserve": (False, False), "arithmetic": None,
}


def edit_targets(src: dict[str, torch.Tensor], g: torch.Generator) -> dict[str, torch.Tensor]:
    """A different class for every attribute of every source."""
    out = {}
    for k, c in ATTRIBUTES.items():
        out[k] = (src[k] + 1 + torch.randint(0, c - 1, src[k].shape, generator=g)) % c
    return out


def judge_images(demo, imgs, truth) -> dict[str, float]:
    return attribute_agreement(demo.judge.predict(imgs), truth)


def run_seed(demo, ref_feats, seed: int, sz: dict, cfg: dict, keep_examples: bool = False, held_out=None) -> dict:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    schedule = NoiseSchedule.make(cfg["schedule"], cfg["T"])
    ddpm = LatentDDPM(cfg["latent_dim"], schedule, hidden=cfg["hidden"], depth=cfg["depth"])
    ddpm_loss = train_ddpm(ddpm, demo.z_train, steps=sz["ddpm_steps"], seed=seed)
    clf = TimeLatentClassifier(cfg["latent_dim"], ATTRIBUTES, hidden=cfg["hidden"], depth=cfg["depth"])
    clf_loss = train_latent_classifier(clf, schedule, demo.z_train, demo.labels_train, steps=sz["clf_steps"], seed=seed)
    lin = LogisticDirections(ATTRIBUTES).fit(demo.z_train, demo.labels_train)
    lcg = LatentGuidance(ddpm, clf, demo.space)
    train_s = time.perf_counter() - t0
    probe = {}
    if held_out is not None:  # how well each latent classifier reads held-out clean latents
        z_ho, lab_ho = held_out
        probe = {"time_classifier_t0": attribute_agreement(clf.predict(z_ho, 0), lab_ho),
                 "logistic": attribute_agreement(lin.predict(z_ho), lab_ho)}

    # -- conditional generation ----------------------------------------------------------------
    g = torch.Generator().manual_seed(10_000 + seed)
    n = sz["n_gen"]
    targets = {k: torch.randint(0, c, (n,), generator=g) for k, c in ATTRIBUTES.items()}
    gen = {}
    with torch.no_grad():
        z_unc = ddim_sample(ddpm, schedule, torch.randn(n, cfg["latent_dim"], generator=g),
                            schedule.timesteps(cfg["gen_steps"]))
    z_lcg = [lcg.generate(n, targets, s, steps=cfg["gen_steps"], generator=g) for s in cfg["gen_scales"]]
    z_ari = latent_arithmetic(lin, z_unc, targets)
    names = ["ddpm_unguided"] + [f"lcg_scale{s:g}" for s in cfg["gen_scales"]] + ["ddpm_arithmetic"]
    for name, z in zip(names, [z_unc, *z_lcg, z_ari]):
        imgs = demo.space.decode(z)
        pred = demo.judge.predict(imgs)
        acc = attribute_agreement(pred, targets)
        joint = float(torch.stack([pred[k] == targets[k] for k in ATTRIBUTES]).all(0).float().mean())
        gen[name] = {"acc": acc, "acc_mean": statistics.fmean(acc.values()), "joint": joint,
                     "fd": frechet_distance(demo.judge.embed(imgs), ref_feats)}

    # -- sequential editing --------------------------------------------------------------------
    x_src, lab_src = make_shapes(sz["n_edit"], 20_000 + seed)
    z_src = demo.space.encode(x_src)
    recon = demo.space.decode(z_src)
    tg = edit_targets(lab_src, torch.Generator().manual_seed(30_000 + seed))
    edits = [(k, tg[k]) for k in EDIT_ORDER]
    ref_acc = judge_images(demo, recon, lab_src)
    results = {}
    examples = {}
    for name, switches in EDIT_METHODS.items():
        if switches is None:
            zs = sequential_arithmetic(lin, z_src, edits)
        else:
            pull, hold = switches
            zs = lcg.edit_sequential(z_src, edits, cfg["scale"], t0=cfg["t0"], steps=cfg["edit_steps"],
                                     source_scale=cfg["source_scale"] if pull else 0.0,
                                     hold_scale=cfg["hold_scale"] if hold else 0.0)
        rows = []
        for k, z in enumerate(zs, start=1):
            imgs = demo.space.decode(z)
            pred = demo.judge.predict(imgs)
            done, left = EDIT_ORDER[:k], EDIT_ORDER[k:]
            ok_edit = torch.stack([pred[a] == tg[a] for a in done])
            ok_keep = torch.stack([pred[a] == lab_src[a] for a in left]) if left else None
            intended = ok_edit.all(0) & (ok_keep.all(0) if ok_keep is not None else True)
            rows.append({"k": k, "edited_acc": float(ok_edit.float().mean()),
                         "preserved": float(ok_keep.float().mean()) if ok_keep is not None else None,
                         "all_intended": float(intended.float().mean()),
                         "latent_dist": float((z - z_src).norm(dim=1).mean()),
                         "image_dist": float((imgs - recon).abs().mean())})
        results[name] = rows
        if keep_examples:
            examples[name] = torch.stack([demo.space.decode(z[:6]) for z in zs], 1)  # [6, 4, 1, H, W]
    out = {"seed": seed, "train_s": train_s, "eval_s": time.perf_counter() - t0 - train_s,
           "ddpm_final_loss": statistics.fmean(ddpm_loss[-100:]), "clf_final_loss": statistics.fmean(clf_loss[-100:]),
           "generation": gen, "editing": results, "reconstruction_acc": ref_acc, "latent_probe_acc": probe}
    if keep_examples:
        out["_examples"] = {"source": x_src[:6], "recon": recon[:6], "edits": examples,
                            "targets": {k: tg[k][:6] for k in EDIT_ORDER}}
    return out


def summarise(runs: list[dict]) -> dict:
    gen = {}
    for m in runs[0]["generation"]:
        gen[m] = {key: mean_std([r["generation"][m][key] for r in runs]) for key in ("acc_mean", "joint", "fd")}
        for a in ATTRIBUTES:
            gen[m][f"acc_{a}"] = mean_std([r["generation"][m]["acc"][a] for r in runs])
    edit = {}
    for m in EDIT_METHODS:
        edit[m] = []
        for k in range(len(EDIT_ORDER)):
            edit[m].append({key: mean_std([r["editing"][m][k][key] for r in runs])
                            for key in ("edited_acc", "preserved", "all_intended", "latent_dist", "image_dist")})
    recon = {a: mean_std([r["reconstruction_acc"][a] for r in runs]) for a in ATTRIBUTES}
    probe = {kind: {a: mean_std([r["latent_probe_acc"][kind][a] for r in runs]) for a in ATTRIBUTES}
             for kind in ("time_classifier_t0", "logistic") if all(r.get("latent_probe_acc") for r in runs)}
    return {"generation": gen, "editing": edit, "reconstruction_acc": recon, "latent_probe_acc": probe}


def _f(ms, pct: bool = False, d: int = 2) -> str:
    return pm(ms, fmt=".1f" if pct else f".{d}f", scale=100 if pct else 1)


def to_markdown(report: dict) -> str:
    c, sz, s = report["config"], report["sizes"], report["summary"]
    lines = [
        *header(report, "Latent classifier guidance on a semantic latent space (shapes VAE)", unfinished="seed"),
        "",
        f"Data: 1×32×32 procedurally rendered shapes with exact attributes (shape ∈ square/circle/triangle, "
        f"size small/large, position left/right, fill filled/outline; vertical position and intensity vary as "
        f"nuisances). Generator: a conv VAE (latent dim {c['latent_dim']}, β = {c['vae_beta']}, {sz['vae_epochs']} "
        f"epochs on {sz['n_train']} images); latents = standardised posterior means. Judge: an independent CNN "
        f"trained on other rendered images ({sz['judge_steps']} steps), its 64-d penultimate features define the "
        f"Fréchet distance (FD, against {sz['n_ref']} real images). The VAE and judge are trained once (seed 0); "
        f"per seed ({sz['seeds']} seeds, mean ± sample std): the latent DDPM (MLP {c['hidden']}×{c['depth']} "
        f"blocks, {c['schedule']} schedule, T = {c['T']}, {sz['ddpm_steps']} steps), the time-conditioned latent "
        f"classifier ({sz['clf_steps']} steps on noised latents), the sampled noise and the edited images.",
        "",
        f"Guidance: generation by DDIM (η = 0, {c['gen_steps']} steps) with λ = "
        f"{', '.join(f'{x:g}' for x in c['gen_scales'])} for every target attribute (`lcg_scaleλ`); editing with "
        f"λ = {c['scale']:g} by DDIM inversion of the source to t₀ = {c['t0']} and {c['edit_steps']} guided DDIM steps back, "
        f"preservation terms λ_s = {c['source_scale']} (source pull) and λ_h = {c['hold_scale']} (hold the other "
        "attributes at their current values). Latent arithmetic: multinomial logistic directions on clean latents, "
        "step = distance between the class means along the direction (InterFaceGAN form).",
        "",
        "## Conditional generation",
        "",
        f"{sz['n_gen']} samples per seed, each with an independently drawn target for all four attributes. Accuracy = "
        "judge's reading equals the target (unguided: chance level, for reference); joint = all four right.",
        "",
        "| method | mean attribute acc (%) | " + " | ".join(f"{a} (%)" for a in ATTRIBUTES)
        + " | joint (%) | FD ↓ |",
        "|---|---:|" + "---:|" * len(ATTRIBUTES) + "---:|---:|",
    ]
    for m, r in s["generation"].items():
        lines.append(f"| {m} | {_f(r['acc_mean'], True)} | " + " | ".join(_f(r[f'acc_{a}'], True) for a in ATTRIBUTES)
                     + f" | {_f(r['joint'], True)} | {_f(r['fd'])} |")
    rec = s["reconstruction_acc"]
    lines += ["", "Ceiling: the judge reads the VAE's *reconstructions* of real images as "
              + ", ".join(f"{a} {_f(rec[a], True)}%" for a in ATTRIBUTES)
              + " — what the generator itself can express; edits are judged on decoded images too.", ""]
    probe = s.get("latent_probe_acc") or {}
    if probe:
        lines += ["Reading the attributes from held-out clean *latents* (the real images the FD uses, encoded): "
                  "the time-conditioned latent classifier at t = 0 — "
                  + ", ".join(f"{a} {_f(probe['time_classifier_t0'][a], True)}%" for a in ATTRIBUTES)
                  + "; the logistic classifiers behind latent arithmetic — "
                  + ", ".join(f"{a} {_f(probe['logistic'][a], True)}%" for a in ATTRIBUTES)
                  + ". An attribute the logistic model cannot separate is one linear arithmetic cannot edit.", ""]
    lines += [
              "## Sequential editing", "",
              f"{sz['n_edit']} encoded real images per seed, edited in the order {' → '.join(EDIT_ORDER)}; every "
              "target differs from the source. After k edits: edited acc = share of the k edited attributes the "
              "judge reads as the target; preserved = share of the 4−k unedited attributes still at their source "
              "value; all = every attribute as intended; distances to the source (standardised latent L2; mean "
              "absolute pixel difference to the source's reconstruction).", "",
              "| method | k | edited acc (%) | preserved (%) | all intended (%) | latent dist | image dist |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for m in EDIT_METHODS:
        for k, r in enumerate(s["editing"][m], start=1):
            lines.append(f"| {m} | {k} | {_f(r['edited_acc'], True)} | {_f(r['preserved'], True)} | "
                         f"{_f(r['all_intended'], True)} | {_f(r['latent_dist'])} | {_f(r['image_dist'], d=3)} |")
    lines += ["", "![edits](guidance_edits.png)", "",
              "`guidance_edits.png`: seed 0, six sources (real image, reconstruction), then the result after each "
              "sequential edit, for LCG with preservation, LCG without, and latent arithmetic.", ""]
    if report.get("findings"):
        lines += ["## Findings", ""] + [f"- {f}" for f in report["findings"]] + [""]
    return "\n".join(lines)


def findings(s: dict) -> list[str]:
    """Plain statements read off the summary (no hand-typed numbers)."""
    out = []
    g = s["generation"]
    lcg = [m for m in g if m.startswith("lcg")]
    best = max(lcg, key=lambda m: g[m]["joint"][0])
    out.append(f"Generation: the LCG setting with the highest joint accuracy ({best}) reaches {100 * g[best]['acc_mean'][0]:.1f}% mean attribute "
               f"accuracy (all four right: {100 * g[best]['joint'][0]:.1f}%) against "
               f"{100 * g['ddpm_arithmetic']['acc_mean'][0]:.1f}% ({100 * g['ddpm_arithmetic']['joint'][0]:.1f}%) for "
               f"latent arithmetic on unguided samples; FD {g[best]['fd'][0]:.1f} vs "
               f"{g['ddpm_arithmetic']['fd'][0]:.1f} (unguided DDPM {g['ddpm_unguided']['fd'][0]:.1f}). FD by scale: "
               + ", ".join(f"{m} {g[m]['fd'][0]:.1f}" for m in lcg) + ".")
    e = s["editing"]
    last = len(EDIT_ORDER) - 1
    parts = [f"{m} {100 * e[m][last]['all_intended'][0]:.1f}%" for m in EDIT_METHODS]
    out.append("After all four edits, share of images with every attribute as intended: " + ", ".join(parts) + ".")
    parts = [f"{m} {100 * e[m][0]['preserved'][0]:.1f}%" for m in EDIT_METHODS]
    out.append("After one edit (shape), unedited attributes preserved: " + ", ".join(parts) + ".")
    return out


def edits_figure(ex: dict):
    """``guidance_edits.png``: seed 0's sources, reconstructions and sequential edits."""
    methods = [("lcg_preserve", "LCG + preservation (pull + hold)"), ("lcg_no_preserve", "LCG, no preservation"),
               ("arithmetic", "latent arithmetic")]
    n, size, pad = ex["source"].shape[0], ex["source"].shape[-1], 2
    cols = 2 + len(EDIT_ORDER)
    labels = ["source", "recon"] + [f"+{a}" for a in EDIT_ORDER]
    fig, axes = figure(1, len(methods), figsize=(3.3 * len(methods), 3.9), dpi=120)
    for ax, (m, title) in zip(axes, methods):
        canvas = torch.ones(n * (size + pad) - pad, cols * (size + pad) - pad)
        for i in range(n):
            row = [ex["source"][i], ex["recon"][i]] + [ex["edits"][m][i, k] for k in range(len(EDIT_ORDER))]
            for j, img in enumerate(row):
                y, x = i * (size + pad), j * (size + pad)
                canvas[y:y + size, x:x + size] = img[0]
        ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([j * (size + pad) + size / 2 for j in range(cols)], labels, fontsize=6.5)
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle("Sequential edits (each edit moves the attribute to a different class; white = separator)",
                 fontsize=9)
    yield "guidance_edits.png", fig


def main(argv=None) -> int:
    ap = parser("guidance", __doc__, quick="smaller models and sets, 2 seeds (a few minutes)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 5; 2 with --quick)")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sz = dict(SIZES[mode])
    if args.seeds is not None:
        if args.seeds < 1:
            ap.error("--seeds must be >= 1")
        sz["seeds"] = args.seeds
    cfg = dict(GUIDE)
    run = Run("guidance", argv, quick=args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = run.report(mode=mode, sizes=sz, config=cfg, edit_order=EDIT_ORDER, runs=[], summary={})
    # finished seeds survive an interrupted run (the VAE and judge are retrained deterministically)
    key_base = json.dumps({"sizes": {k: v for k, v in sz.items() if k != "seeds"}, "config": cfg}, sort_keys=True)
    log = Progress(out / f"guidance_progress_{mode}.jsonl")
    t = time.perf_counter()
    demo = build_shapes_demo(n_train=sz["n_train"], latent_dim=cfg["latent_dim"], vae_epochs=sz["vae_epochs"],
                             judge_steps=sz["judge_steps"], vae_beta=cfg["vae_beta"], seed=0)
    report["build_s"] = time.perf_counter() - t
    run.log(f"VAE + judge trained in {report['build_s']:.0f} s")
    x_ref, lab_ref = make_shapes(sz["n_ref"], 40_000)
    ref_feats = demo.judge.embed(x_ref)
    held_out = (demo.space.encode(x_ref), lab_ref)
    examples = None
    for seed in range(sz["seeds"]):
        key = f"{key_base}|seed={seed}"
        rec = log.get(key)
        if rec is None or (seed == 0 and not (out / "guidance_edits.png").exists()):
            r = run_seed(demo, ref_feats, seed, sz, cfg, keep_examples=(seed == 0), held_out=held_out)
            if seed == 0:
                examples = r.pop("_examples")
            rec = {"key": key, "run": r}
            log.add(rec)
        r = rec["run"]
        report["runs"].append(r)
        run.log(f"seed {seed}: LCG gen acc {max(v['acc_mean'] for v in r['generation'].values()) * 100:.1f}%, "
                f"4-edit all-intended {100 * r['editing']['lcg_preserve'][-1]['all_intended']:.1f}% "
                f"(train {r['train_s']:.0f} s, eval {r['eval_s']:.0f} s)")
        report["summary"] = summarise(report["runs"])
        report["findings"] = findings(report["summary"])
        done = seed == sz["seeds"] - 1
        write_report(out, "guidance", run.stamp(report, complete=done), to_markdown,
                     (lambda _: edits_figure(examples)) if examples is not None and (done or seed == 0) else None,
                     echo=done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
