"""Y-PSNR of a trained LIPT in each inference form (fp32, int8, bf16 from ``lipt_arch.optimize``) on test sets.

    python benchmarks/quant_psnr.py --model experiments/zoo_LIPT_tiny_x4/models/net_g_1600.pth
    python benchmarks/quant_psnr.py --model net.pth --dtypes fp32 int8 --sets Set5 --markdown psnr.md

``--model`` is any checkpoint ``lipt infer`` reads. LR images are MATLAB-style bicubic downsamplings of the HR
test images at the model's scale (``lipt_arch.data.sr_pairs``); Y-PSNR after 8-bit rounding, ``scale`` pixels of
border cropped. int8 is calibrated on LR crops of ``--calibration`` (training images: T91 by default, never a test
set). Whole images, one at a time, ``--threads`` CPU threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.sr_eval import psnr_y  # noqa: E402
from benchmarks.train_t91 import shared_root  # noqa: E402
from lipt_arch.checkpoints import load_any  # noqa: E402
from lipt_arch.data.sr_pairs import load_folder_pairs  # noqa: E402
from lipt_arch.deploy.optimized import optimize  # noqa: E402
from lipt_arch.validation import PRECISIONS  # noqa: E402

GOAL_DB = 0.1  # target: int8 within 0.1 dB of fp32


def set_psnr(model: torch.nn.Module, pairs: list, scale: int) -> float:
    """Mean Y-PSNR (dB) of ``model`` over ``pairs`` (:class:`~lipt_arch.data.sr_pairs.SRPair`)."""
    values = []
    for pair in pairs:
        x = torch.from_numpy(np.ascontiguousarray(pair.lr.transpose(2, 0, 1)))[None]
        with torch.no_grad():
            sr = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        values.append(psnr_y(sr, pair.hr, scale))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help='checkpoint (any kind lipt infer reads)')
    parser.add_argument('--scale', type=int, default=None, help='expected scale (checked against the checkpoint)')
    parser.add_argument('--window-size', type=int, default=None, help='for checkpoints that do not record it')
    parser.add_argument('--dtypes', nargs='+', default=['fp32', 'int8', 'bf16'], choices=PRECISIONS)
    parser.add_argument('--sets', nargs='+', default=['Set5', 'Urban100'], help='folders under datasets/ with HR/')
    parser.add_argument('--calibration', type=Path, default=shared_root() / 'datasets' / 'train' / 'T91',
                        help='training images for the int8 calibration (default: T91)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--markdown', type=Path, help='write the table here')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_any(args.model, args.scale, args.window_size)
    scale = loaded.config['upscale']
    forms = {}
    for dtype in args.dtypes:
        start = time.perf_counter()
        forms[dtype] = optimize(loaded.model, dtype, 'cpu', calibration=args.calibration if dtype == 'int8' else None)
        print(f'{dtype}: built in {time.perf_counter() - start:.1f} s', flush=True)
    results: dict[str, dict[str, float]] = {}
    for name in args.sets:
        folder = shared_root() / 'datasets' / name / 'HR'
        if not folder.is_dir():
            sys.exit(f'error: HR folder not found: {folder} (set LIPT_SHARED)')
        pairs = load_folder_pairs(folder, scale)
        for dtype, model in forms.items():
            start = time.perf_counter()
            results.setdefault(name, {})[dtype] = set_psnr(model, pairs, scale)
            print(f'{name} ({len(pairs)} images) x{scale} {dtype}: {results[name][dtype]:.3f} dB '
                  f'({time.perf_counter() - start:.0f} s)', flush=True)
    lines = [f'{args.model}, x{scale}, Y-PSNR (dB); int8 calibrated on {args.calibration}; torch {torch.__version__}',
             '', '| set | ' + ' | '.join(args.dtypes) + ' | ' + ' | '.join(
                 f'{d} - fp32' for d in args.dtypes if d != 'fp32') + ' |',
             '|---' * (2 * len(args.dtypes)) + '|']
    for name, row in results.items():
        deltas = [f"{row[d] - row['fp32']:+.3f}" if 'fp32' in row else '' for d in args.dtypes if d != 'fp32']
        lines.append(f'| {name} | ' + ' | '.join(f'{row[d]:.3f}' for d in args.dtypes) + ' | ' + ' | '.join(deltas)
                     + ' |')
    if 'int8' in args.dtypes and 'fp32' in args.dtypes:
        worst = max(row['fp32'] - row['int8'] for row in results.values())
        verdict = 'met' if worst <= GOAL_DB else 'not met'
        lines += ['', f'int8 loss: at most {worst:.3f} dB (goal <= {GOAL_DB} dB: {verdict})']
    table = '\n'.join(lines) + '\n'
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == '__main__':
    main()
