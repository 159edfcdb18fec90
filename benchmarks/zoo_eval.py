"""Package a trained LIPT for the model zoo: fuse it, score it, write its model card and docs/models.md.

    python benchmarks/zoo_eval.py --name lipt-tiny-x2 --experiment experiments/zoo_LIPT_tiny_x2 \
        --cpu-seconds 2900 [--init-from lipt-tiny-x2]
    python benchmarks/zoo_eval.py --markdown docs/models.md --readme README.md --figure docs/models_x4.png  # docs

The first form reads ``<experiment>/models/net_g_latest.pth`` (a BasicSR training checkpoint of ``basicsr train``
with LIPTModel), the option file BasicSR copied into the experiment folder and its training log, writes the fused
weights to ``lipt_arch/zoo/weights/<name>.safetensors`` and the card (data, recipe, iterations, time, Y-PSNR / SSIM on
Set5, Set14, B100 and Urban100 next to bicubic and the paper's) to ``lipt_arch/zoo/models.json``. Test sets come from
``$LIPT_SHARED/datasets`` (default ``../shared``).
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
from lipt_arch.data.sr_pairs import bicubic_upsample, list_images, load_folder_pairs  # noqa: E402
from lipt_arch.visualization import side_by_side  # noqa: E402
from lipt_arch.zoo import file_sha256, load_pretrained, model_cards, package_folder  # noqa: E402
from lipt_arch.zoo.evaluate import network_upscaler, score_folder  # noqa: E402

TEST_SETS = {'Set5': 'Set5/HR', 'Set14': 'Set14/HR', 'B100': 'B100/HR', 'Urban100': 'Urban100/HR'}
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
INTRO = """# Pretrained models

Shipped inside the package (`lipt_arch/zoo/weights/`, fused, safetensors with the config in the metadata); `lipt models`
lists them, `lipt_arch.zoo.load_pretrained('tiny', scale=4)` loads one, and `lipt infer` uses `lipt-tiny-x<scale>`
(default x4) when no `--model` is given. Written by `benchmarks/zoo_eval.py`, which measured every score below;
`tests/test_zoo.py` checks that an installed wheel reproduces the Set5 scores within 0.02 dB.

**What these are.** CPU-budget models: LIPT-Tiny trained for minutes on 2 CPU cores with this project's own pipeline
(`basicsr train` + LIPTModel) on the classic small training sets, not on the paper's DF2K (not obtainable on the
machines this project trains on) and not for the paper's 1000 epochs on 8 GPUs. They beat bicubic clearly and stay
well below the paper's LIPT-Tiny; train with `options/train_LIPT_tiny_x*.yml` on DF2K for the paper's numbers.
Y-PSNR (dB) / SSIM on the Y channel, `scale` border pixels cropped, HR modcropped, LR by MATLAB-style bicubic
(LIPT_SPEC.md section 4); Urban100 is its first 20 images.
"""
ITER_LINE = re.compile(r'^(\S+ \S+),\d+ INFO: .*iter:\s*([\d,]+)')
START_LINE = re.compile(r'^(\S+ \S+),\d+ INFO: Start training')


def cpu_description() -> str:
    """The processor's model name, core count and the vector ISA torch uses, e.g. ``AMD EPYC, 2 cores, AVX2``."""
    info = cpu_info()
    return f"{info['model']}, {info['cpus']} cores, {torch.backends.cpu.get_cpu_capability()}"


def _count_images(folder: str) -> int:
    path = Path(folder) if Path(folder).is_dir() else shared_root() / Path(folder).relative_to('../shared')
    return len(list_images(path))


def training_record(experiment: Path) -> dict:
    """Iterations, patch, batch, data and wall minutes of a ``basicsr train`` run, from its files."""
    option_files = sorted(experiment.glob('*.yml'))
    if not option_files:
        raise SystemExit(f'zoo_eval: {experiment}: no option file (*.yml) in the experiment folder')
    opt = yaml.safe_load(option_files[0].read_text())
    logs = sorted(experiment.glob('train_*.log'))
    if not logs:
        raise SystemExit(f'zoo_eval: {experiment}: no train_*.log in the experiment folder')
    start = end = None
    iterations = 0
    for line in logs[-1].read_text().splitlines():
        if (m := START_LINE.match(line)) and start is None:
            start = datetime.fromisoformat(m.group(1))
        elif m := ITER_LINE.match(line):
            end, iterations = datetime.fromisoformat(m.group(1)), int(m.group(2).replace(',', ''))
    train = opt['datasets']['train']
    folders = train.get('hr_folders') or [train.get('dataroot_gt')]
    return {
        'options': f"options/zoo/{option_files[0].name}",
        'data': f"{' + '.join(Path(f).name for f in folders)} ({sum(map(_count_images, folders))} HR images; LR by "
                'MATLAB-style bicubic)',
        'iterations': iterations,
        'batch': train['batch_size_per_gpu'],
        'hr_patch': train['gt_size'],
        'lr': opt['train']['optim_g']['lr'],
        'schedule': opt['train']['scheduler']['type'],
        'pretrained_from': opt['path'].get('pretrain_network_g'),
        'wall_minutes': round((end - start).total_seconds() / 60, 1) if start and end else None,
    }


def package_model(args: argparse.Namespace) -> None:
    experiment = Path(args.experiment)
    checkpoint = experiment / 'models' / 'net_g_latest.pth'
    loaded = load_any(checkpoint, window_size=8)
    model, config = loaded.model, loaded.model.config
    preset = args.preset
    weights = package_folder() / 'weights' / f'{args.name}.safetensors'
    weights.parent.mkdir(parents=True, exist_ok=True)
    lipt_arch.save_model(model, weights)
    record = training_record(experiment)
    record.update(cpu_minutes=round(args.cpu_seconds / 60, 1) if args.cpu_seconds else None, threads=1,
                  machine=cpu_description(), init_from=args.init_from)
    scale = config['upscale']
    scores, bicubic = {}, {}
    for name, sub in TEST_SETS.items():
        folder = shared_root() / 'datasets' / sub
        scores[name] = score_folder(network_upscaler(model), folder, scale)
        bicubic[name] = score_folder(None, folder, scale)
        print(f"{args.name} {name}: {scores[name]['psnr']:.2f} dB / {scores[name]['ssim']:.4f} "
              f"(bicubic {bicubic[name]['psnr']:.2f} / {bicubic[name]['ssim']:.4f})", flush=True)
    paper = PAPER.get((preset, scale), {})
    card = {
        'task': 'sr', 'preset': preset, 'scale': scale, 'file': weights.name, 'sha256': file_sha256(weights),
        'fused_parameters': sum(p.numel() for p in model.parameters()),
        'training': record,
        'scores': {k: {'psnr': round(v['psnr'], 3), 'ssim': round(v['ssim'], 4), 'images': v['images']}
                   for k, v in scores.items()},
        'bicubic': {k: {'psnr': round(v['psnr'], 3), 'ssim': round(v['ssim'], 4)} for k, v in bicubic.items()},
        'paper': {k: {'psnr': p, 'ssim': s} for k, (p, s) in paper.items()},
    }
    manifest = package_folder() / 'models.json'
    cards = json.loads(manifest.read_text()) if manifest.is_file() else {}
    cards[args.name] = card
    manifest.write_text(json.dumps(dict(sorted(cards.items())), indent=1) + '\n')
    model_cards.cache_clear()
    print(f'wrote {weights} and its card in {manifest}')


def markdown(cards: dict) -> str:
    """docs/models.md from the cards."""
    lines = [INTRO]
    for name, card in cards.items():
        t = card['training']
        lines += [f"## {name}", '',
                  f"- Network: LIPT-{card['preset'].capitalize()} x{card['scale']}, {card['fused_parameters']:,} fused "
                  f"parameters; file `{card['file']}` (SHA-256 `{card['sha256'][:16]}...`).",
                  f"- Data: {t['data']}.",
                  f"- Recipe: `{t['options']}`: {t['iterations']} iterations, batch {t['batch']} of "
                  f"{t['hr_patch']}x{t['hr_patch']} HR patches, Adam lr {t['lr']} with {t['schedule']}, L1 loss"
                  + (f"; initialised from {t['init_from']} (all weights but the tail)" if t.get('init_from') else
                     '; from scratch with zero-initialised residual branches') + '.',
                  f"- Training time: {t['wall_minutes']} min wall, {t['cpu_minutes']} min of CPU time, "
                  f"{t['threads']} thread on {t['machine']}, on a machine shared with other jobs.", '',
                  '| test set | LIPT (this model) | bicubic | paper\'s LIPT |', '|---|---|---|---|']
        for test, score in card['scores'].items():
            paper = card['paper'].get(test)
            bic = card['bicubic'][test]
            lines.append(f"| {test} ({score['images']}) | {score['psnr']:.2f} / {score['ssim']:.4f} | "
                         f"{bic['psnr']:.2f} / {bic['ssim']:.4f} | "
                         + (f"{paper['psnr']:.2f} / {paper['ssim']:.4f} |" if paper else '- |'))
        lines.append('')
    return '\n'.join(lines)


README_HEADER = ('| model | Set5 | Set14 | B100 | Urban100 (20) | Set5: bicubic / paper | training (1 CPU thread) |\n'
                 '|---|---|---|---|---|---|---|\n')


def readme_table(cards: dict) -> str:
    """README's table of the shipped models (header and one row per card; the scores as docs/models.md gives them)."""
    rows = []
    for name, card in cards.items():
        t, scores = card['training'], card['scores']
        cells = [f"{scores[test]['psnr']:.2f} / {scores[test]['ssim']:.4f}" for test in TEST_SETS]
        paper = card['paper'].get('Set5', {}).get('psnr')
        reference = f"{card['bicubic']['Set5']['psnr']:.2f} / " + (f'{paper:.2f}' if paper else '-')
        origin = re.search(r'x\d', t.get('init_from') or '')  # the scale of the model it was fine-tuned from
        budget = f"{t['iterations']} it, {t['cpu_minutes']} CPU min" + (f' (from {origin[0]})' if origin else '')
        rows.append(f"| {name} | {' | '.join(cells)} | {reference} | {budget} |\n")
    return README_HEADER + ''.join(rows)


def write_readme_table(readme: Path, cards: dict) -> None:
    """Replace the table of shipped models in ``readme`` (its header to the next blank line) by :func:`readme_table`."""
    text = readme.read_text()
    start = text.find(README_HEADER)
    if start < 0:
        raise SystemExit(f'zoo_eval: {readme} has no table of shipped models (header: {README_HEADER.splitlines()[0]})')
    end = text.find('\n\n', start)
    readme.write_text(text[:start] + readme_table(cards) + text[end + 1:])
    print(f'wrote the shipped-models table of {readme}')


def label(img: np.ndarray, text: str) -> np.ndarray:
    """A copy of (H, W, 3) uint8 BGR with ``text`` on a dark band at the top."""
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def figure(name: str, image: str, box: tuple[int, int, int], path: Path) -> None:
    """``input (bicubic) | LIPT | ground truth`` of an HR crop ``box`` = (top, left, size), labelled, as a PNG."""
    model = load_pretrained(name)
    scale = model.config['upscale']
    pair = next(p for p in load_folder_pairs(shared_root() / 'datasets' / Path(image).parent, scale)
                if p.name == Path(image).stem)
    top, left, size = box
    sr = network_upscaler(model)(pair.lr)
    panels = [bicubic_upsample(pair.lr, scale), sr, pair.hr]
    titles = [f'input x{scale} (bicubic)', f'{name}', 'ground truth']
    crops = []
    for img, title in zip(panels, titles):
        crop = np.clip(np.round(img[top:top + size, left:left + size] * 255), 0, 255).astype(np.uint8)[..., ::-1]
        crop = cv2.resize(crop, (size * 2, size * 2), interpolation=cv2.INTER_NEAREST)
        crops.append(label(crop, title))
    cv2.imwrite(str(path), side_by_side(crops))
    print(f'wrote {path}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--name', help='zoo name, e.g. lipt-tiny-x2')
    parser.add_argument('--experiment', help='basicsr experiment folder of the training run')
    parser.add_argument('--preset', default='tiny')
    parser.add_argument('--cpu-seconds', type=float, help='CPU time the training process used')
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
