"""Issue 18's loop, measured: a scripted person picks in the studio, the studio learns, tuned vs base.

    python benchmarks/learn_from_choices.py --taste low --prompts 200 --out benchmarks/learn_low.json

1. start `python app.py` on the bundled model with a fresh data directory;
2. a scripted person (benchmarks/scripted_people.py) with the taste given works through `--prompts`
   prompts of the shapes train split: /think, /draw 4 candidates with vary_plans, /prefer the one it
   likes best (no verdict where its taste sees no difference);
3. /learn with the default budget, then /learn_status until done (or failed: the script says why);
4. on `--heldout` prompts of the dev split, 4 varied candidates from base and from base + the
   adapter with the same seeds (in this process, off the studio): the share of prompts where the
   taste likes the tuned model's candidates better (prompts where the two are the same to it are
   left out), and the checker's accuracy of both.
The JSON written holds every figure, the commands and the environment.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taste", required=True, help="a taste of benchmarks/scripted_people.py")
    parser.add_argument("--prompts", type=int, default=200, help="prompts the person picks on")
    parser.add_argument("--heldout", type=int, default=100, help="dev-split prompts of the comparison")
    parser.add_argument("--minutes", type=float, default=None, help="the learn budget (default: the studio's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the studio's data here (default: a temp dir)")
    parser.add_argument(
        "--picks-from",
        type=Path,
        default=None,
        help="copy the store and pictures of an earlier run's data dir instead of collecting picks again",
    )
    parser.add_argument(
        "--learn-setting",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="passed to the studio (python app.py --learn-setting): a finetune learn setting to try",
    )
    parser.add_argument("--model", default=None, help="the studio's model (default: what `python app.py` opens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch

    from benchmarks.scripted_people import TASTES, ScriptedPerson, taste_win_rate
    from reasoner.pipeline import ReasonerPipeline
    from reasoner.records import DrawSettings
    from reasoner.shapes import make_suite
    from reasoner.shapes.score import score_image
    from tests.e2e.server import start

    if args.taste not in TASTES:
        parser.error(f"--taste: one of {', '.join(TASTES)}")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="learn-bench-")) / "data"
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "taste": args.taste,
    }

    # 1-2. The person picks in a live studio (or the picks of an earlier run are copied)
    if args.picks_from is not None:
        from reasoner.store import DB_NAME

        data_dir.mkdir(parents=True, exist_ok=False)
        shutil.copy2(args.picks_from / DB_NAME, data_dir / DB_NAME)
        shutil.copytree(args.picks_from / "images", data_dir / "images")
    settings = [flag for setting in args.learn_setting for flag in ("--learn-setting", setting)]
    from reasoner.models.catalog import base_and_adapter
    from ui.models import default_studio_model

    model = args.model or default_studio_model()
    report["model"] = model
    server = start(Path(model), data_dir, "--engine", "fast", *settings)
    try:
        client = server.client()
        if args.picks_from is None:
            person = ScriptedPerson(client, args.taste)
            prompts = [p.prompt for p in make_suite("train", args.prompts, args.seed + 1)]
            started = time.monotonic()
            records = person.session(prompts, seed=args.seed)
            report["collect"] = {
                "prompts": len(records),
                "verdicts": sum(r["verdict"] is not None for r in records),
                "seconds": round(time.monotonic() - started, 1),
            }
        else:
            report["collect"] = {"copied_from": str(args.picks_from)}
        report["collect"]["taste_ceiling"] = taste_ceiling(data_dir, TASTES[args.taste])
        report["learn_settings"] = args.learn_setting
        print(f"collected {report['collect']}", flush=True)

        # 3. Learn, through the studio
        started = time.monotonic()
        budget = args.minutes if args.minutes is not None else 15
        print(client.predict(budget, api_name="/learn"), flush=True)
        while True:
            time.sleep(10)
            line = client.predict(api_name="/learn_status")[0]
            if not line.startswith("Learning"):
                break
        report["learn"] = {"status": line, "seconds": round(time.monotonic() - started, 1)}
        print(line, flush=True)
        if not line.startswith("Done"):
            args.out.write_text(json.dumps(report, indent=1) + "\n")
            return 1
        adapter = data_dir / "adapters" / line.split("adapter ", 1)[1].split(" ", 1)[0]
    finally:
        server.stop()
    report["learn"]["provenance"] = json.loads((adapter / "provenance.json").read_text())["figures"]

    # 4. Base against tuned on held-out prompts, the same seeds
    base = ReasonerPipeline.from_pretrained(model, engine="fast")
    on, _ = base_and_adapter(model)  # a learnt adapter continues an adapted entry's own, on its base
    tuned = ReasonerPipeline.from_pretrained(on, engine="fast", adapter=adapter)
    heldout = [p.prompt for p in make_suite("dev", args.heldout, args.seed)]
    pictures = {"base": [], "tuned": []}
    correct = {"base": 0, "tuned": 0}
    for k, prompt in enumerate(heldout):
        settings = DrawSettings(n=4, seed=10_000 + 16 * k, vary_plans=True)
        for name, pipeline in (("base", base), ("tuned", tuned)):
            drawn = [c.image for c in pipeline.draw(prompt, None, settings)]
            pictures[name].append(drawn)
            correct[name] += sum(bool(score_image(picture, prompt).passed) for picture in drawn)
    total = 4 * len(heldout)
    report["heldout"] = {
        "prompts": len(heldout),
        "taste": taste_win_rate(TASTES[args.taste], pictures["base"], pictures["tuned"]),
        "checker_accuracy": {name: round(correct[name] / total, 4) for name in correct},
    }
    for name, taste in TASTES.items():  # the other tastes: did learning this one move them?
        if name != args.taste:
            report["heldout"][f"other_taste_{name}"] = taste_win_rate(taste, pictures["base"], pictures["tuned"])
    print(json.dumps(report["heldout"], indent=1))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def taste_ceiling(data_dir: Path, taste) -> float:
    """Pair accuracy of the taste itself on the pairs the reward model learns from (the store's
    pairs, identical pictures dropped; an exact tie counts half): what the reward model's held-out
    pair accuracy is to be read against. Below 1 where different pictures tie for the taste (the
    same height, for `low`), and the person's pick among equals says nothing."""
    from PIL import Image

    from finetune.preferences import read_preferences

    preferences = read_preferences(data_dir)
    scores = {}
    for image_hash, path in preferences.images.items():
        with Image.open(path) as picture:
            scores[image_hash] = taste(picture)
    margins = [scores[p.chosen] - scores[p.rejected] for p in preferences.pairs]
    right = [0.5 if abs(m) < 1e-9 else float(m > 0) for m in margins]  # 1e-9: float noise is a tie
    return round(sum(right) / len(right), 4)


if __name__ == "__main__":
    raise SystemExit(main())
