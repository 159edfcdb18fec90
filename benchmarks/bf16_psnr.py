"""How far bf16 autocast moves a trained LIPT's output: PSNR of bf16 against fp32 on real LR images.

    python benchmarks/bf16_psnr.py --model net_g_deploy_latest.pth   # Set5 HR -> bicubic LR at the model scale

``--model`` is any checkpoint ``lipt_arch.load_model`` reads (a fused checkpoint with its config). Outputs are
clamped to [0, 1]; the PSNR is over all RGB values (peak 1).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_t91 import shared_root  # noqa: E402
from lipt_arch import load_model  # noqa: E402
from lipt_arch.data.sr_pairs import load_folder_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help='fused LIPT checkpoint (lipt_arch.load_model)')
    parser.add_argument('--folder', type=Path, default=shared_root() / 'datasets' / 'Set5' / 'HR', help='HR images')
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f'error: HR folder not found: {args.folder} (set LIPT_SHARED or --folder)')
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    scale = model.config['upscale']
    worst = math.inf
    for pair in load_folder_pairs(args.folder, scale):
        x = torch.from_numpy(pair.lr.transpose(2, 0, 1).copy()).unsqueeze(0)
        with torch.inference_mode():
            fp32 = model(x).clamp(0, 1)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                bf16 = model(x).float().clamp(0, 1)
        psnr = 10 * math.log10(1.0 / ((fp32 - bf16) ** 2).mean().item())
        worst = min(worst, psnr)
        print(f'{pair.name:12s} x{scale}  bf16 vs fp32: {psnr:6.2f} dB')
    print(f'lowest: {worst:.2f} dB (goal >= 50 dB)')


if __name__ == '__main__':
    main()
