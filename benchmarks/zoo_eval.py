"""Package a trained LIPT for the model zoo: fuse it, score it, write its model card and docs/models.md.

    python benchmarks/zoo_eval.py --name lipt-tiny-x2 --experiment experiments/zoo_LIPT_tiny_x2_lr48 \
        [--checkpoint experiments/zoo_LIPT_tiny_x2_lr48/models/net_g_3000.pth] [--init-from lipt-tiny-x2]
    python benchmarks/zoo_eval.py --name lipt-tiny-denoise --experiment experiments/zoo_LIPT_tiny_denoise_blind
    python benchmarks/zoo_eval.py --markdown docs/models.md --readme README.md --figure docs/models_x4.png  # docs

The first form reads ``<experiment>/models/net_g_latest.pth`` or ``--checkpoint`` (a BasicSR training checkpoint of
``basicsr train`` with LIPTModel; its EMA weights), the option file BasicSR copied into the experiment folder and its
training logs (every resumed part), writes the fused
weights to ``lipt_arch/zoo/weights/<name>.safetensors`` and the card (data, recipe, iterations, time, scores) to
``lipt_arch/zoo/models.json``. The task comes from the training dataset's type: SR models score Y-PSNR / SSIM on
Set5, Set14, B100 and Urban100 next to bicubic and the paper's; the denoising model (LIPTDenoiseDataset) RGB PSNR /
SSIM on CBSD68 and McMaster at sigma 15, 25, 50; the JPEG model (LIPTJPEGDataset) gray PSNR /
SSIM / PSNR-B on Classic5 and LIVE1 at quality 10, 20, 30, 40, each next to the degraded input's. Test sets come
from ``$LIPT_SHARED/datasets`` (default ``../shared``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lipt_arch  # noqa: E402
from benchmarks.machine import cpu_info  # noqa: E402
from benchmarks.train_t91 import shared_root  # noqa: E402
from lipt_arch.checkpoints import load_any  # noqa: E402
from lipt_arch.data.restoration import parse_level  # noqa: E402
from lipt_arch.data.sr_pairs import bicubic_upsample, load_folder_pairs  # noqa: E402
from lipt_arch.image_io import is_image_path  # noqa: E402
from lipt_arch.visualization import side_by_side  # noqa: E402
from lipt_arch.zoo import LEVEL_NAMES, file_sha256, load_pretrained, model_cards, package_folder  # noqa: E402
from lipt_arch.zoo.evaluate import (  # noqa: E402
    RESTORATION,
    TEST_FOLDERS,
    TEST_SETS,
    network_restorer,
    network_upscaler,
    psnr_y,
    score_folder,
    score_restoration,
)

TASK_OF_DATASET = {'LIPTDenoiseDataset': 'denoise', 'LIPTJPEGDataset': 'jpeg'}  # any other training dataset: SR
# LIPT_SPEC.md section 5: the paper's LIPT-Tiny / LIPT-Small rows (PSNR, SSIM), DF2K, 1000 epochs on 8 GPUs.
PAPER = {
    ('tiny', 2): {'Set5': (38.03, .9608), 'Set14': (33.61, .9184), 'B100': (32.20, .9000), 'Urban100': (32.12, .9286)},
    ('tiny', 3): {'Set5': (34.38, .9279), 'Set14': (30.32, .8430), 'B100': (29.12, .8072), 'Urban100': (28.24, .8542)},
    ('tiny', 4): {'Set5': (32.19, .8961), 'Set14': (28.60, .7860), 'B100': (27.59, .7385), 'Urban100': (26.16, .7883)},
    ('small', 2): {'Set5': (38.20, .9615), 'Set14': (33.96, .9217), 'B100': (32.36, .9021),
                   'Urban100': (32.87, .9355)},
    ('small', 3): {'Set5': (34.66, .9300), 'Set14': (30.59, .8475), 'B100': (29.26, .8112),
                   'Urban100': (28.75, .8650)},
    ('small', 4): {'Set5': (32.51, .8990), 'Set14': (28.81, .7870), 'B100': (27.72, .7427),
                   'Urban100': (26.57, .8015)},
}
# Published Y-PSNR of two classic CNNs (their papers; Urban100 over all 100 images, ours over the first 20):
# FSRCNN (Dong et al., ECCV 2016; T91 + General100) and VDSR (Kim et al., CVPR 2016; T91 + BSD200, the 291 images).
CLASSIC = {
    'FSRCNN': {2: {'Set5': 37.00, 'Set14': 32.63, 'B100': 31.53, 'Urban100': 29.88},
               3: {'Set5': 33.16, 'Set14': 29.43, 'B100': 28.53, 'Urban100': 26.43},
               4: {'Set5': 30.71, 'Set14': 27.59, 'B100': 26.98, 'Urban100': 24.62}},
    'VDSR': {2: {'Set5': 37.53, 'Set14': 33.03, 'B100': 31.90, 'Urban100': 30.76},
             3: {'Set5': 33.66, 'Set14': 29.77, 'B100': 28.82, 'Urban100': 27.14},
             4: {'Set5': 31.35, 'Set14': 28.01, 'B100': 27.29, 'Urban100': 25.18}},
}
# Published PSNR of DnCNN (Zhang et al., IEEE TIP 2017) as SwinIR's tables list them (Liang et al., ICCVW 2021): the
# blind colour denoiser CDnCNN-B on CBSD68 and the blind DnCNN-3 (gray JPEG, one model for q 10-40) on Classic5. Only
# the sets where our inputs match theirs: Classic5's q10 input scores 27.82 dB here as in their table; our gray
# LIVE1 input does not (27.02 dB against their 27.77), so its figures are left out.
DNCNN = {'denoise': {'CBSD68': {'15': 33.90, '25': 31.24, '50': 27.95}},
         'jpeg': {'Classic5': {'10': 29.40, '20': 31.63, '30': 32.91, '40': 33.77}}}
INTRO = """# Pretrained models

Shipped inside the package (`lipt_arch/zoo/weights/`, fused, safetensors with the config in the metadata); `lipt models`
lists them, `lipt_arch.zoo.load_pretrained('tiny', scale=4)` loads one (`task='denoise'` or `task='jpeg'` the
restoration models), and `lipt infer` uses `lipt-tiny-x<scale>` (default x4) when no `--model` is given
(`--model lipt-tiny-denoise`, `--model lipt-tiny-jpeg` for the others). Written by `benchmarks/zoo_eval.py`, which
measured every score below; `tests/test_zoo.py` checks that an installed wheel reproduces each model's headline score
(Set5; CBSD68 at sigma 25; Classic5 at quality 10) within 0.02 dB.

**What these are.** CPU-budget models: LIPT-Tiny trained for one to six hours on 2 CPU cores with this project's own
pipeline (`basicsr train` + LIPTModel) on the classic small training sets, not on the paper's DF2K (not obtainable on
the machines this project trains on) and not for the paper's 1000 epochs on 8 GPUs. They beat bicubic clearly and stay
well below the paper's LIPT-Tiny; train with `options/train_LIPT_tiny_x*.yml` on DF2K for the paper's numbers.
Y-PSNR (dB) / SSIM on the Y channel, `scale` border pixels cropped, HR modcropped, LR by MATLAB-style bicubic
(LIPT_SPEC.md section 4); Urban100 is its first 20 images. FSRCNN's and VDSR's columns are their published scores
(Urban100 over all 100 images). Denoising and JPEG follow docs/restoration.md: the noisy or JPEG inputs are made on
the fly with a seed per image name (the same inputs every run), noise not clipped; denoising scores RGB PSNR / SSIM,
JPEG gray PSNR / SSIM / PSNR-B (OpenCV's gray, full range), no border cropped; McMaster is full size.

## How they are trained

`options/zoo/train_LIPT_tiny_x2_lr48.yml`, then `..._x3_lr48.yml` and `..._x4_lr48.yml`, each from the x2 network's
EMA weights at iteration 3000 (every tensor but the tail, whose shape depends on the scale; at 500 iterations the EMA
still mixes in the random initial tail, so its score there is low). Recipe: `basicsr train` with LIPTModel, batch 16
of 48x48 LR patches (images smaller than the HR patch left out), Adam, a cosine schedule, zero-initialised residual
branches (x2), EMA 0.995, `train.amp: bf16` and `train.compile: rep_convs` (the fastest step on an AVX512-BF16 CPU).
The training state travels in git (`zoo/training/<run>/`, `python benchmarks/zoo_state.py save|restore <option
file>`), so a run continues where the last machine stopped. Short pilot runs chose the recipe (AMD EPYC Zen 4,
AVX512-BF16, 2 threads; Set5 of the fused EMA network as BasicSR's validation reports it; step times as the training
logs report them, beside other work at load averages 2-14: not idle timings):

| run | step (s) | Set5 (dB) |
|---|---|---|
| x2, six-branch form, EMA 0.999 | 2.4-2.9 | 14.73 at 500 (61% initial weights; training network 34.10) |
| x2, six-branch form, EMA 0.995 | 2.2-2.9 | 37.26 / 37.43 / 37.48 at 2000 / 2500 / 3000 |
| x2 from 3000, cosine shortened to 4250 (lr 4e-4 to 1e-5) | 2.0-2.8 | 37.48 / 37.48 / 37.48 at 3500 / 4000 / 4250 |
| x2 continued in the fused form from 3000, lr 1.4e-3 (the cosine's value there) | 0.46 | diverged: 11.66 at +250 |
| x2 continued in the fused form from 3000, lr 2e-4 | 0.45 | 37.43 / 37.42 at +250 / +500 (no gain) |
| x2 from 4250, L2 loss, 64x64 LR patches, lr 2e-4 cosine | 3.7-4.3 | 37.48 / 37.48 at +250 / +500 (no gain) |
| x2 from 4250, restart at lr 1e-3, cosine 2250 | 1.8-2.4 | 37.53 / 37.56 / 37.57 / 37.58 at 4500 / 5000 / 5500 / 6500 |
| x4 from x2 (3000), lr 1e-3 | 2.0-2.9 | 27.75 / 31.08 / 31.32 / 31.40 at 500 / 1000 / 1500 / 2000 |
| x4 continued from 2250 on the same cosine (to 4000) | 1.9-2.1 | 31.45 / 31.47 / 31.47 at 2500 / 3000 / 3500 |
| x3 from x2 (3000), lr 1e-3 | 2.0-3.0 | 29.57 / 33.41 / 33.66 / 33.72 / 33.77 at 500 / 1000 / 1500 / 2000 / 2500 |

At the bottom of its first cosine the x2 curve is flat (37.48 dB from 3000 to 4250), and neither an L2 loss nor
larger patches at a low learning rate move it; a warm restart does: with the learning rate back at 1e-3 and annealed
again over 2250 iterations, Set5 passes VDSR's 37.53 dB within 250 iterations and ends at 37.58 dB. The shipped x2 is
the network of iteration 6500 (x3 and x4 start from its iteration 3000, before the restart). x3 is shipped at
iteration 2500 of its 4000-iteration cosine, x4 at 3500 of 4000, where its curve has flattened; the committed
states continue both. The fused form's step
is about 4.8x cheaper (no six-branch convs, no BatchNorm), but without the BatchNorm in the
attention projections it does not train at the six-branch form's learning rate, and at a rate it survives it gains
nothing; every shipped model trains in the six-branch form. **Fine-tuning on your own data**: start from the training
form, `zoo/training/<run>/net_g_<iter>.pth` in the repository (`path.pretrain_network_g` with `param_key_g:
params_ema`), not from the fused weights in the package.

**Denoising and JPEG** (`options/zoo/train_LIPT_tiny_denoise_blind.yml`, `..._jpeg_blind.yml`): the same pipeline
with LIPTDenoiseDataset / LIPTJPEGDataset on all 341 training images, a sigma drawn per crop from [0, 50] or a JPEG
quality from 10..40 (gray), batch 16 of 48x48 crops, `img_residual: true` (the network predicts the correction), L1,
Adam lr 1e-3 on a cosine over 1000 iterations, EMA 0.995, bf16 + compile, from the x2 network's EMA weights at
iteration 3000 (all but the tail; for the gray JPEG model the RGB head summed over R, G, B with the mean folded into
its bias: `python benchmarks/zoo_state.py gray-start`). Validation as the logs report it (fused EMA network; CBSD68 at
sigma 25, Classic5 at quality 10; noisy input 20.54 dB, JPEG input 27.82 dB):

| run | step (s) | validation PSNR (dB) |
|---|---|---|
| denoising, sigma 0-50 | 2.2-2.9 | 22.70 / 28.64 / 30.36 / 30.62 at 250 / 500 / 750 / 1000 |
| gray JPEG, quality 10-40 | 2.5-3.7 | 26.06 / 28.45 / 28.91 / 28.99 at 250 / 500 / 750 / 1000 |

Both curves still rise at the end of their short cosine (the low early values are the EMA still holding the random
initial tail), so longer runs from the committed states should gain more; DnCNN's published figures, in the tables
below where our inputs match its, are not reached yet.
"""
ITER_LINE = re.compile(r'^(\S+ \S+),\d+ INFO: .*iter:\s*([\d,]+)')
START_LINE = re.compile(r'^(\S+ \S+),\d+ INFO: Start training')


def cpu_description() -> str:
    """The processor's model name, core count and the vector ISA torch uses, e.g. ``AMD EPYC, 2 cores, AVX2``."""
    info = cpu_info()
    return f"{info['model']}, {info['cpus']} cores, {torch.backends.cpu.get_cpu_capability()}"


def _local(folder: str) -> Path:
    return Path(folder) if Path(folder).is_dir() else shared_root() / Path(folder).relative_to('../shared')


def _images_in(path: Path) -> int:
    """How many images ``path`` holds itself (not in sub-folders)."""
    return sum(is_image_path(p) for p in path.iterdir())


def _count_images(folder: str) -> int:
    path = _local(folder)
    return _images_in(path) + sum(_images_in(sub) for sub in path.iterdir() if sub.is_dir())


def _set_names(folder: str) -> list[str]:
    """The name of a folder of images, or of its sub-folders when the images are in those (``train/`` -> T91, ...)."""
    path = _local(folder)
    subs = [sub.name for sub in sorted(path.iterdir()) if sub.is_dir() and _images_in(sub)]
    return subs if subs and not _images_in(path) else [path.name]


def _degradation(train: dict) -> str:
    """How the training inputs are made, for the card's data line."""
    task = TASK_OF_DATASET.get(train['type'], 'sr')
    if task == 'sr':
        return 'LR by MATLAB-style bicubic'
    option = RESTORATION[task]['option']
    low, high = (f'{v:g}' for v in parse_level(train[option], option, 0, 255))
    if task == 'denoise':
        return f'Gaussian noise of sigma {low}-{high} added to each crop'
    return f'read as gray, each crop JPEG-encoded at quality {low}-{high}'


def training_minutes(logs: list[Path], iteration: int) -> float | None:
    """Wall minutes of training (validation and saving included) that led to ``iteration``, over every
    ``train_*.log`` of a run that was stopped and resumed: each log line's iteration is charged the time since the log's
    previous line (or its start line); an iteration trained again after a resume is charged once, by the last log."""
    charged: dict[int, float] = {}
    for log in sorted(logs):
        previous = None
        for line in log.read_text().splitlines():
            if m := START_LINE.match(line):
                previous = datetime.fromisoformat(m.group(1))
            elif (m := ITER_LINE.match(line)) and previous is not None:
                now = datetime.fromisoformat(m.group(1))
                charged[int(m.group(2).replace(',', ''))] = (now - previous).total_seconds()
                previous = now
    seconds = sum(v for k, v in charged.items() if k <= iteration)
    return round(seconds / 60, 1) if seconds else None


def training_record(experiment: Path, iteration: int) -> dict:
    """Iterations, patch, batch, data and wall minutes of a ``basicsr train`` run (up to ``iteration``), from its
    files."""
    option_files = sorted(experiment.glob('*.yml'))
    if not option_files:
        raise SystemExit(f'zoo_eval: {experiment}: no option file (*.yml) in the experiment folder')
    opt = yaml.safe_load(option_files[-1].read_text())
    logs = sorted(experiment.glob('train_*.log'))
    if not logs:
        raise SystemExit(f'zoo_eval: {experiment}: no train_*.log in the experiment folder')
    train = opt['datasets']['train']
    folders = train.get('hr_folders') or [train.get('dataroot_gt')]
    return {
        'options': f"options/zoo/train_{opt['name'].removeprefix('zoo_')}.yml",
        'task': TASK_OF_DATASET.get(train['type'], 'sr'),
        'data': f"{' + '.join(n for f in folders for n in _set_names(f))} ({sum(map(_count_images, folders))} HR "
                f'images; {_degradation(train)})',
        'iterations': iteration,
        'batch': train['batch_size_per_gpu'],
        'hr_patch': train['gt_size'],
        'lr': opt['train']['optim_g']['lr'],
        'schedule': opt['train']['scheduler']['type'],
        'periods': opt['train']['scheduler'].get('periods'),
        'restart_weights': opt['train']['scheduler'].get('restart_weights'),
        'loss': opt['train']['pixel_opt']['type'].removesuffix('Loss'),
        'pretrained_from': opt['path'].get('pretrain_network_g'),
        'init_all': bool(opt['path'].get('pretrain_network_g')) and opt['path'].get('strict_load_g', True),
        'wall_minutes': training_minutes(logs, iteration),
    }


def checkpoint_iteration(checkpoint: Path, experiment: Path) -> int:
    """The iteration of ``net_g_<iter>.pth``; for ``net_g_latest.pth`` the run's total_iter."""
    if (m := re.fullmatch(r'net_g_(\d+)\.pth', checkpoint.name)):
        return int(m.group(1))
    option_files = sorted(experiment.glob('*.yml'))
    return int(yaml.safe_load(option_files[-1].read_text())['train']['total_iter'])


def package_model(args: argparse.Namespace) -> None:
    experiment = Path(args.experiment)
    checkpoint = Path(args.checkpoint) if args.checkpoint else experiment / 'models' / 'net_g_latest.pth'
    loaded = load_any(checkpoint, window_size=8)  # params_ema when the checkpoint has it
    model, config = loaded.model, loaded.model.config
    preset = args.preset
    weights = package_folder() / 'weights' / f'{args.name}.safetensors'
    weights.parent.mkdir(parents=True, exist_ok=True)
    lipt_arch.save_model(model, weights)
    record = training_record(experiment, checkpoint_iteration(checkpoint, experiment))
    record.update(cpu_minutes=round(args.cpu_seconds / 60, 1) if args.cpu_seconds else None, threads=args.threads,
                  machine=cpu_description(), init_from=args.init_from)
    task = record.pop('task')
    common = {'task': task, 'preset': preset, 'scale': config['upscale'], 'channels': config['num_in_ch'],
              'file': weights.name, 'sha256': file_sha256(weights),
              'fused_parameters': sum(p.numel() for p in model.parameters()), 'training': record}
    scores = sr_scores(model, args.name, preset) if task == 'sr' else restoration_scores(model, args.name, task)
    card = common | scores
    manifest = package_folder() / 'models.json'
    cards = json.loads(manifest.read_text()) if manifest.is_file() else {}
    cards[args.name] = card
    manifest.write_text(json.dumps(dict(sorted(cards.items())), indent=1) + '\n')
    model_cards.cache_clear()
    print(f'wrote {weights} and its card in {manifest}')


def _rounded(score: dict) -> dict:
    return {k: round(v, 4 if k == 'ssim' else 3) if isinstance(v, float) else v for k, v in score.items()}


def sr_scores(model: torch.nn.Module, name: str, preset: str) -> dict:
    """The SR card's ``scores`` (Y-PSNR / SSIM per test set), ``bicubic`` and ``paper``."""
    scale = model.config['upscale']
    scores, bicubic = {}, {}
    for test in TEST_SETS['sr']:
        folder = shared_root() / 'datasets' / TEST_FOLDERS[test]
        scores[test] = _rounded(score_folder(network_upscaler(model), folder, scale))
        bicubic[test] = _rounded(score_folder(None, folder, scale))
        bicubic[test].pop('images')
        print(f"{name} {test}: {scores[test]['psnr']:.2f} dB / {scores[test]['ssim']:.4f} "
              f"(bicubic {bicubic[test]['psnr']:.2f} / {bicubic[test]['ssim']:.4f})", flush=True)
    paper = PAPER.get((preset, scale), {})
    return {'scores': scores, 'bicubic': bicubic, 'paper': {k: {'psnr': p, 'ssim': s} for k, (p, s) in paper.items()}}


def restoration_scores(model: torch.nn.Module, name: str, task: str) -> dict:
    """The restoration card's ``scores`` and ``input`` (the degraded input's), per test set and level; ``paper`` is
    empty (LIPT_SPEC.md gives no restoration figures for LIPT-Tiny)."""
    scores, inputs = {}, {}
    for test in TEST_SETS[task]:
        folder = shared_root() / 'datasets' / TEST_FOLDERS[test]
        scores[test], inputs[test] = {}, {}
        for level in RESTORATION[task]['levels']:
            got = scores[test][str(level)] = _rounded(score_restoration(network_restorer(model), folder, task, level))
            base = inputs[test][str(level)] = _rounded(score_restoration(None, folder, task, level))
            base.pop('images')
            print(f"{name} {test} {LEVEL_NAMES[task]} {level}: {got['psnr']:.2f} dB / {got['ssim']:.4f} "
                  f"(input {base['psnr']:.2f} / {base['ssim']:.4f})", flush=True)
    return {'scores': scores, 'input': inputs, 'paper': {}}


def _recipe_line(card: dict) -> str:
    t = card['training']
    if t.get('init_from'):
        left_out = '' if t.get('init_all', False) else ', all weights but the tail'
        start = f"; initialised from {t['init_from']}{left_out}"
    else:
        start = '; from scratch with zero-initialised residual branches'
    schedule = t['schedule']
    if len(t.get('periods') or []) > 1:  # warm restarts: say where and how high
        weights = ', '.join(f'{w:g}' for w in t['restart_weights'])
        schedule += f" (periods {', '.join(map(str, t['periods']))}; restart weights {weights})"
    return (f"- Recipe: `{t['options']}`: {t['iterations']} iterations, batch {t['batch']} of "
            f"{t['hr_patch']}x{t['hr_patch']} {'HR ' if card['task'] == 'sr' else ''}patches, Adam lr {t['lr']} "
            f"with {schedule}, {t.get('loss', 'L1')} loss{start}.")


def _card_head(name: str, card: dict) -> list[str]:
    t = card['training']
    kind = {'sr': f"x{card['scale']}", 'denoise': 'blind colour denoising',
            'jpeg': 'blind gray JPEG artifact reduction'}
    return [f"## {name}", '',
            f"- Network: LIPT-{card['preset'].capitalize()} {kind[card['task']]}, {card['fused_parameters']:,} fused "
            f"parameters; file `{card['file']}` (SHA-256 `{card['sha256'][:16]}...`).",
            f"- Data: {t['data']}.",
            _recipe_line(card),
            f"- Training time: {t['wall_minutes']} min wall"
            + (f", {t['cpu_minutes']} min of CPU time" if t.get('cpu_minutes') else '')
            + f", {t['threads']} thread{'s' if t['threads'] > 1 else ''} on {t['machine']}, shared with "
            'other work.', '']


def _sr_table(card: dict) -> list[str]:
    lines = ['| test set | LIPT (this model) | bicubic | FSRCNN | VDSR | paper\'s LIPT |', '|---|---|---|---|---|---|']
    for test, score in card['scores'].items():
        paper = card['paper'].get(test)
        bic = card['bicubic'][test]
        classic = [CLASSIC[net].get(card['scale'], {}).get(test) for net in ('FSRCNN', 'VDSR')]
        lines.append(f"| {test} ({score['images']}) | {score['psnr']:.2f} / {score['ssim']:.4f} | "
                     f"{bic['psnr']:.2f} / {bic['ssim']:.4f} | "
                     + ''.join(f'{c:.2f} | ' if c else '- | ' for c in classic)
                     + (f"{paper['psnr']:.2f} / {paper['ssim']:.4f} |" if paper else '- |'))
    return lines


def _restoration_table(card: dict) -> list[str]:
    """Rows: test sets; columns: levels, each ``LIPT / input (DnCNN)`` PSNR, then the SSIM (and PSNR-B) of LIPT."""
    task = card['task']
    levels = list(next(iter(card['scores'].values())))
    level = LEVEL_NAMES[task]
    extra = ' / PSNR-B' if task == 'jpeg' else ''
    lines = ['| test set | ' + ' | '.join(f'{level} {v}' for v in levels) + f' | SSIM{extra} of LIPT |',
             '|---|' + '---|' * (len(levels) + 1)]
    for test, by_level in card['scores'].items():
        cells = []
        for v in levels:
            dncnn = DNCNN[task].get(test, {}).get(v)
            cells.append(f"{by_level[v]['psnr']:.2f} / {card['input'][test][v]['psnr']:.2f}"
                         + (f' ({dncnn:.2f})' if dncnn else ''))
        quality = ', '.join(f"{by_level[v]['ssim']:.4f}" + (f" / {by_level[v]['psnrb']:.2f}" if extra else '')
                            for v in levels)
        images = next(iter(by_level.values()))['images']
        lines.append(f"| {test} ({images}) | {' | '.join(cells)} | {quality} |")
    metric = 'RGB PSNR' if task == 'denoise' else 'Gray PSNR'
    lines += ['', f'{metric} (dB) of LIPT / of the degraded input'
              + (' (DnCNN\'s published figure, where our input matches its table\'s)' if DNCNN[task] else '') + '.']
    return lines


def markdown(cards: dict) -> str:
    """docs/models.md from the cards: the SR models first, then the restoration ones."""
    lines = [INTRO]
    for name, card in sorted(cards.items(), key=lambda kv: kv[1]['task'] != 'sr'):
        lines += _card_head(name, card)
        lines += _sr_table(card) if card['task'] == 'sr' else _restoration_table(card)
        lines.append('')
    return '\n'.join(lines)


README_HEADER = ('| model | Set5 | Set14 | B100 | Urban100 (20) | Set5: bicubic / paper | training on a CPU |\n'
                 '|---|---|---|---|---|---|---|\n')
README_RESTORATION_HEADER = ('| model | task | test set | PSNR at each level (input) | training on a CPU |\n'
                             '|---|---|---|---|---|\n')


def _budget(t: dict) -> str:
    origin = re.search(r'x\d', t.get('init_from') or '')  # the scale of the model it was fine-tuned from
    return f"{t['iterations']} it, {t['wall_minutes']} min" + (f' (from {origin[0]})' if origin else '')


def readme_tables(cards: dict) -> list[str]:
    """README's tables of the shipped models (header and one row per card; the scores as docs/models.md gives them):
    the SR table, and the restoration table when a restoration model is shipped."""
    sr, restoration = [], []
    for name, card in cards.items():
        t, scores = card['training'], card['scores']
        if card['task'] == 'sr':
            cells = [f"{scores[test]['psnr']:.2f} / {scores[test]['ssim']:.4f}" for test in TEST_SETS['sr']]
            paper = card['paper'].get('Set5', {}).get('psnr')
            reference = f"{card['bicubic']['Set5']['psnr']:.2f} / " + (f'{paper:.2f}' if paper else '-')
            sr.append(f"| {name} | {' | '.join(cells)} | {reference} | {_budget(t)} |\n")
            continue
        test = TEST_SETS[card['task']][0]
        level = LEVEL_NAMES[card['task']]
        cells = ', '.join(f"{level} {v}: {s['psnr']:.2f} ({card['input'][test][v]['psnr']:.2f})"
                          for v, s in scores[test].items())
        task = 'colour denoising' if card['task'] == 'denoise' else 'gray JPEG'
        restoration.append(f"| {name} | {task} | {test} | {cells} | {_budget(t)} |\n")
    tables = [README_HEADER + ''.join(sr)]
    return tables + ([README_RESTORATION_HEADER + ''.join(restoration)] if restoration else [])


def write_readme_table(readme: Path, cards: dict) -> None:
    """Replace the tables of shipped models in ``readme`` (each from its header to the next blank line) by
    :func:`readme_tables`; a table whose header is not there yet goes after the one before it."""
    text = readme.read_text()
    end = None
    for table in readme_tables(cards):
        header = ''.join(table.splitlines(keepends=True)[:2])
        start = text.find(header)
        if start < 0 and end is None:
            raise SystemExit(f'zoo_eval: {readme} has no table of shipped models (header: {header.splitlines()[0]})')
        if start < 0:
            text = text[:end + 1] + '\n' + table + text[end + 1:]
            end = end + 1 + len(table)
            continue
        end = text.find('\n\n', start)
        text = text[:start] + table + text[end + 1:]
        end = start + len(table) - 1
    readme.write_text(text)
    print(f'wrote the shipped-models tables of {readme}')


def label(img: np.ndarray, text: str) -> np.ndarray:
    """A copy of (H, W, 3) uint8 BGR with ``text`` on a dark band at the top."""
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def figure(name: str, image: str, box: tuple[int, int, int], path: Path) -> None:
    """``bicubic | LIPT | ground truth`` of an HR crop ``box`` = (top, left, size), each network panel labelled with
    its Y-PSNR on the crop (dB, the paper's protocol), shown at twice the size (nearest neighbour), as a PNG."""
    model = load_pretrained(name)
    scale = model.config['upscale']
    pair = next(p for p in load_folder_pairs(shared_root() / 'datasets' / Path(image).parent, scale)
                if p.name == Path(image).stem)
    top, left, size = box
    window = (slice(top, top + size), slice(left, left + size))
    bicubic, sr, hr = bicubic_upsample(pair.lr, scale), network_upscaler(model)(pair.lr), pair.hr
    network = f'LIPT-{name.split("-")[1].capitalize()} x{scale}'  # lipt-tiny-x4 -> LIPT-Tiny x4
    titles = [f'bicubic {psnr_y(bicubic[window], hr[window], scale):.2f} dB',
              f'{network} {psnr_y(sr[window], hr[window], scale):.2f} dB', 'ground truth']
    crops = []
    for img, title in zip((bicubic, sr, hr), titles):
        crop = np.clip(np.round(img[window] * 255), 0, 255).astype(np.uint8)[..., ::-1]
        crop = cv2.resize(crop, (size * 2, size * 2), interpolation=cv2.INTER_NEAREST)
        crops.append(label(crop, title))
    cv2.imwrite(str(path), side_by_side(crops))
    print(f'wrote {path}: {" | ".join(titles)}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--name', help='zoo name, e.g. lipt-tiny-x2')
    parser.add_argument('--experiment', help='basicsr experiment folder of the training run')
    parser.add_argument('--preset', default='tiny')
    parser.add_argument('--checkpoint',
                        help='training checkpoint to package (default <experiment>/models/net_g_latest.pth)')
    parser.add_argument('--threads', type=int, default=2, help='threads the training process ran on (default 2)')
    parser.add_argument('--cpu-seconds', type=float, help='CPU time the training process used, when measured')
    parser.add_argument('--init-from', help='zoo name of the model this one was fine-tuned from')
    parser.add_argument('--markdown', type=Path, help='write docs/models.md from the cards')
    parser.add_argument('--figure', type=Path, help='write an input | LIPT | ground truth PNG (x4 model)')
    parser.add_argument('--readme', type=Path, help="rewrite README.md's table of shipped models from the cards")
    args = parser.parse_args(argv)
    if args.experiment:
        if not args.name:
            parser.error('--experiment needs --name')
        package_model(args)
    if args.markdown:
        args.markdown.write_text(markdown(model_cards()))
        print(f'wrote {args.markdown}')
    if args.readme:
        write_readme_table(args.readme, model_cards())
    if args.figure:
        figure('lipt-tiny-x4', 'Urban100/HR/img_004.png', (400, 300, 160), args.figure)
    return 0


if __name__ == '__main__':
    sys.exit(main())
