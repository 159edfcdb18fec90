"""Short CPU training from LIPT's default initialisation vs zero-initialised residual branches (zero_init_residual).

Trains on the demo's scikit-image photos and prints the fused Y-PSNR on the held-out photos (256x256 HR centres)
every ``--every`` iterations, next to bicubic. Numbers in docs/training.md.

    python benchmarks/init_compare.py --init default
    python benchmarks/init_compare.py --init zero
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

import lipt_arch  # noqa: F401  (compat shim before basicsr)
from lipt_arch import LIPT, preset_config
from lipt_arch.archs import zero_init_residual_
from lipt_arch.data.skimage_dataset import VAL_IMAGES, SkimageSRDataset, photo_pair

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from sr_eval import seed_everything  # noqa: E402
from train_t91 import bicubic_psnr, fused_psnr  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--init', choices=['default', 'zero'], default='zero')
    parser.add_argument('--num-feat', type=int, default=16)
    parser.add_argument('--num-block', type=int, default=2)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--gt-size', type=int, default=48)
    parser.add_argument('--iters', type=int, default=400, help='cosine decay length (to 0.1x), 20 warmup iterations')
    parser.add_argument('--every', type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seed_everything(0)
    train = SkimageSRDataset({'scale': 2, 'phase': 'train', 'gt_size': args.gt_size})
    val = [photo_pair(name, 2, 256) for name in VAL_IMAGES]
    net = LIPT(**preset_config('tiny', 2, num_feat=args.num_feat, num_block=args.num_block))
    if args.init == 'zero':
        zero_init_residual_(net)
    optimizer = torch.optim.Adam(net.parameters(), args.lr, betas=(0.9, 0.99))
    batches = iter(DataLoader(train, args.batch, sampler=RandomSampler(train, True, 10 ** 9)))
    print(f'bicubic {bicubic_psnr(val, 2):.2f} dB', flush=True)
    start = time.process_time()
    for it in range(1, args.iters + 1):
        lr = args.lr * min(1.0, it / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / args.iters)))
        for group in optimizer.param_groups:
            group['lr'] = lr
        batch = next(batches)
        loss = torch.nn.functional.l1_loss(net(batch['lq']), batch['gt'])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if it % args.every == 0:
            print(f'it {it}: {time.process_time() - start:.0f} CPU s, l1 {float(loss.detach()):.4f}, '
                  f'fused {fused_psnr(net, val, 2):.2f} dB', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
