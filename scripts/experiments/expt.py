"""Shared helpers of the experiment scripts: run polar, skip finished steps, read metrics, compute
FLOPs and 95% intervals. Every step writes into its own directory and is skipped when its result
exists, so an interrupted experiment continues where it stopped."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLAR = os.environ.get("POLAR_BIN", os.path.join(ROOT, "build", "polar"))
THREADS = int(os.environ.get("POLAR_THREADS", "1"))  # 1: OpenMP threads stall on a busy machine
# Student t quantiles t_{0.975, df} for the 95% interval of a mean over seeds.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# Model shapes for the experiments: "tiny" is configs/tiny_pretrain.json's (0.86M parameters with
# the 1000-piece tokenizer), "small" an eighth of its compute per token, for busy 2-core machines.
SHAPES = {"tiny": [], "small": ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=4",
                                "model.num_kv_heads=2", "model.intermediate_size=172"]}


def require_matplotlib():
    """Fails before any compute when the plotting package is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("matplotlib is missing: run with .venv/bin/python (scripts/requirements.txt pins it)")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(args, log_path):
    """Runs a command, output to log_path; exits naming the log on failure."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    with open(log_path, "w") as out:
        code = subprocess.call([str(a) for a in args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if code != 0:
        with open(log_path) as f:
            tail = f.read()[-2000:]
        sys.exit(f"command failed ({code}): {' '.join(map(str, args))}\nlog {log_path}:\n{tail}")


def world_dir(seed, template="finetune", style_mix=0.0):
    suffix = ("" if template == "finetune" else f"_{template}") + ("" if style_mix == 0 else f"_mix{style_mix:g}")
    return os.path.join(ROOT, "data", "experiments", f"world{seed}{suffix}")


def gen_world(out, seed, template="finetune", style_mix=0.0):
    """Synthetic world `seed`: raw JSONL, tokenizer, pre-training (built with `template`; the
    quickstart uses finetune) and preference datasets under `out`; style_mix is gen_data's
    --style-mix (0: the quickstart's world)."""
    raw, tok = os.path.join(out, "raw"), os.path.join(out, "tokenizer")
    if not os.path.exists(os.path.join(raw, "test_content_same_family.jsonl")):
        # Worlds from before the content slices get them; gen_data's other files are unchanged.
        run([sys.executable, "tools/gen_data.py", "--out", raw, "--seed", seed, "--style-mix", style_mix],
            os.path.join(out, "logs", "gen.log"))
    if os.path.exists(os.path.join(out, "finetune", "manifest.json")):
        return
    log(f"building world seed {seed} in {out}")
    run([POLAR, "tokenizer", "train", "--input", f"{raw}/pretrain.jsonl", f"{raw}/finetune.jsonl",
         "--vocab-size", 1000, "--output", tok], os.path.join(out, "logs", "tok.log"))
    limits = ["--max-length", 512, "--max-response-length", 160, "--overwrite"]
    run([POLAR, "data", "pretrain", "--trajectories", f"{raw}/pretrain.jsonl", "--tokenizer", tok, "--output",
         f"{out}/pretrain", "--negatives", 1, "--seed", seed, "--eval-fraction", 0.05, "--template", template]
        + limits, os.path.join(out, "logs", "data_pretrain.log"))
    run([POLAR, "data", "preference", "--input", f"{raw}/finetune.jsonl", "--tokenizer", tok, "--output",
         f"{out}/finetune"] + limits, os.path.join(out, "logs", "data_finetune.log"))


TEST_FILES = ("test.jsonl", "test_same_family.jsonl", "test_other_family.jsonl", "test_content_same_family.jsonl",
              "test_content_other_family_same_skill.jsonl", "test_content_other_family_other_skill.jsonl")


CONTENT_FILES = ("test_content_same_family.jsonl", "test_content_other_family_same_skill.jsonl",
                 "test_content_other_family_other_skill.jsonl")


def finetune_world_dir(seed, prompts, kind="preference", style_mix=0.0):
    """World `seed` with `prompts` fine-tuning prompts (gen_data's default, 300: the world itself),
    or with fine-tuning pairs of the content slices' kind (kind "content")."""
    if kind == "content":
        return world_dir(seed, style_mix=style_mix) + f"_ftc{prompts}"
    return world_dir(seed, style_mix=style_mix) + ("" if prompts == 300 else f"_ft{prompts}")


PROMPTS_PER_DRAW = 6000  # gen_data runs out of distinct fine-tuning prompts between 6000 and 7000 (seed 0)


def gen_finetune_world(base, out, seed, prompts, kind="preference", style_mix=0.0):
    """World `seed` (built in `base`) with its fine-tuning data drawn for `prompts` prompts
    (tools/gen_data.py --finetune-prompts) and everything else kept: base's tokenizer, pre-training
    data and test files, byte for byte. gen_data draws the test prompts from the same stream after
    the fine-tuning ones, so its own test files change with the count (they are not used: drawn
    last, their count does not change the fine-tuning file, and one is asked for), and base's test
    prompts can be among the new fine-tuning prompts: those are dropped. Past PROMPTS_PER_DRAW
    prompts the world has too few distinct prompts: further draws come from gen_data seeds
    seed + 1000 k (the same policies, families and tasks; a family's wrong answer to a given
    problem is drawn anew, and prompts repeat with new responses). kind "content": `prompts` pairs
    of the three content slices' kind instead (a third each), from the content slices of gen_data
    seeds seed + 1000 k, k >= 1 (at most 1000 a slice each; world `seed`'s own are its test files).
    Every draw uses base's --style-mix. Writes out/finetune_world.json (the counts) and returns it."""
    info_path = os.path.join(out, "finetune_world.json")
    if os.path.exists(os.path.join(out, "finetune", "manifest.json")) and os.path.exists(info_path):
        with open(info_path) as f:
            return json.load(f)
    log(f"building world seed {seed} with {prompts} fine-tuning {'pairs of the content kind' if kind == 'content' else 'prompts'} in {out}")
    raw = os.path.join(out, "raw")
    os.makedirs(raw, exist_ok=True)
    held = set()
    for name in TEST_FILES:
        shutil.copyfile(os.path.join(base, "raw", name), os.path.join(raw, name))
        with open(os.path.join(raw, name), encoding="utf-8") as f:
            held |= {json.loads(line)["prompt"] for line in f if line.strip()}
    rows, draws = [], []
    per_draw = 3000 if kind == "content" else PROMPTS_PER_DRAW
    for k in range((prompts + per_draw - 1) // per_draw):
        n = min(per_draw, prompts - k * per_draw)
        gen_seed = seed + 1000 * (k + (kind == "content"))
        gen = os.path.join(out, "gen" if k == 0 else f"gen{k}")
        counts = [n, 1] if kind != "content" else [1, (n + 2) // 3]
        if not os.path.exists(os.path.join(gen, "test_content_same_family.jsonl")):
            run([sys.executable, "tools/gen_data.py", "--out", gen, "--seed", gen_seed, "--finetune-prompts", counts[0],
                 "--test-prompts", counts[1], "--style-mix", style_mix], os.path.join(out, "logs", f"gen{k}.log"))
        if k == 0 and kind != "content":
            with open(os.path.join(gen, "pretrain.jsonl"), "rb") as a, \
                    open(os.path.join(base, "raw", "pretrain.jsonl"), "rb") as b:
                if a.read() != b.read():
                    sys.exit(f"{gen}/pretrain.jsonl differs from {base}/raw/pretrain.jsonl: not the same world")
        drawn = []
        for name in CONTENT_FILES if kind == "content" else ["finetune.jsonl"]:
            with open(os.path.join(gen, name), encoding="utf-8") as f:
                drawn += [line for line in f if line.strip()]
        kept = [line for line in drawn if json.loads(line)["prompt"] not in held]
        draws.append({"gen_data_seed": gen_seed, "prompts": n, "dropped_test_prompts": len(drawn) - len(kept),
                      "kept": len(kept)})
        rows += kept
    tmp = os.path.join(raw, "finetune.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(rows)
    os.replace(tmp, os.path.join(raw, "finetune.jsonl"))
    tok = os.path.join(out, "tokenizer")
    if os.path.exists(tok):
        shutil.rmtree(tok)
    shutil.copytree(os.path.join(base, "tokenizer"), tok)
    run([POLAR, "data", "preference", "--input", f"{raw}/finetune.jsonl", "--tokenizer", tok, "--output",
         f"{out}/finetune", "--max-length", 512, "--max-response-length", 160, "--overwrite"],
        os.path.join(out, "logs", "data_finetune.log"))
    info = {"kind": kind, "finetune_prompts": prompts, "dropped_test_prompts": sum(d["dropped_test_prompts"] for d in draws),
            "kept": len(rows), "draws": draws}
    write_json(info_path, info)
    return info


def pretrain_data(world, seed, negatives_from, template="finetune", negatives=1):
    """The world's pre-training dataset with `negatives` per group chosen by `polar data pretrain
    --negatives-from` (any with 1 negative: the world's own `pretrain`); returns its directory."""
    if negatives_from == "any" and negatives == 1:
        return os.path.join(world, "pretrain")
    out = os.path.join(world, "pretrain_" + negatives_from.replace(":", "_") + ("" if negatives == 1 else f"_k{negatives}"))
    if not os.path.exists(os.path.join(out, "manifest.json")):
        run([POLAR, "data", "pretrain", "--trajectories", f"{world}/raw/pretrain.jsonl", "--tokenizer",
             f"{world}/tokenizer", "--output", out, "--negatives", negatives, "--seed", seed, "--eval-fraction", 0.05,
             "--template", template, "--negatives-from", negatives_from, "--policies",
             f"{world}/raw/policies.json", "--max-length", 512, "--max-response-length", 160, "--overwrite"],
            os.path.join(world, "logs", f"data_{os.path.basename(out)}.log"))
    return out


def train(config, out_dir, sets):
    """polar train with --set overrides into out_dir; skipped when out_dir/final exists."""
    if os.path.exists(os.path.join(out_dir, "final", "model.safetensors")):
        return
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    log(f"train {os.path.relpath(out_dir, ROOT)}")
    args = [POLAR, "train", "--config", config, "--set", f"run.output_dir={out_dir}",
            "--set", f"train.threads={THREADS}", "--set", "train.device=cpu"]
    for s in sets:
        args += ["--set", s]
    run(args, out_dir + ".log")


def evaluate(checkpoint, data, out_json):
    """polar eval -> its JSON (cached in out_json)."""
    if not os.path.exists(out_json):
        run([POLAR, "eval", "--checkpoint", checkpoint, "--data", data, "--output", out_json, "--device", "cpu"],
            out_json + ".log")
    with open(out_json) as f:
        return json.load(f)


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def non_embedding_params(run_dir):
    """Parameters that cost FLOPs per token: every layer's matrices and norms, the final norm and
    the head (the embedding lookup costs none)."""
    with open(os.path.join(run_dir, "config.json")) as f:
        m = json.load(f)["model"]
    h, i, layers = m["hidden_size"], m["intermediate_size"], m["num_layers"]
    kv = m["num_kv_heads"] * (h // m["num_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return layers * per_layer + 2 * h


def train_flops(run_dir, upto_step=None):
    """6 * N * tokens trained (forward + backward), N = non-embedding parameters."""
    tokens = sum(r["tokens"] for r in metrics(run_dir) if upto_step is None or r["step"] <= upto_step)
    return 6.0 * non_embedding_params(run_dir) * tokens


def mean_ci(values):
    """(mean, low, high): the 95% t interval of the mean over seeds (a point when n == 1)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def save_figure(fig, path):
    """Writes a matplotlib figure to `path` (PNG) atomically."""
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=120)
    os.replace(path + ".tmp.png", path)
