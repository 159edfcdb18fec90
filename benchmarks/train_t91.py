"""Train LIPT x2 on T91 for a fixed wall-clock budget on the CPU; fused Y-PSNR on Set5 / Set14 vs bicubic.

Not a unit test: a measurement. Training time is what the clock budget counts; evaluations pause the clock.
Data: ``$LIPT_SHARED/datasets/{train/T91,Set5/HR,Set14/HR}`` (``LIPT_SHARED`` defaults to ``../shared``).
HR is modcropped, LR is MATLAB-style bicubic (rounded to 8 bits), grayscale images become 3 channels, PSNR is
BasicSR's ``calculate_psnr`` on the Y channel with ``crop_border = scale``, always of the fused network.

    python benchmarks/train_t91.py --minutes 20 --eval-every 2.5 --out docs/training.md --png docs/training_t91.png
    python benchmarks/train_t91.py --minutes 20 --amp bf16    # bf16 autocast steps, as LIPTModel's train.amp
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

import lipt_arch
from lipt_arch import LIPT, preset_config, reparameterize
from lipt_arch.archs import zero_init_residual_
from lipt_arch.data.sr_pairs import PairedMemoryDataset, SRPair, bicubic_upsample, load_folder_pairs
from lipt_arch.models import training_speed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.sr_eval import psnr_y, seed_everything  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEST_SETS = ('Set5', 'Set14')


def shared_root() -> Path:
    """``$LIPT_SHARED`` or ``<repo>/../shared``."""
    return Path(os.environ.get('LIPT_SHARED', REPO.parent / 'shared'))


def bicubic_psnr(pairs: list[SRPair], scale: int) -> float:
    """Mean Y-PSNR of MATLAB bicubic upsampling of each LR."""
    return float(np.mean([psnr_y(bicubic_upsample(p.lr, scale), p.hr, scale) for p in pairs]))


@torch.no_grad()
def fused_psnr(net: nn.Module, pairs: list[SRPair], scale: int) -> float:
    """Mean Y-PSNR of ``reparameterize(net)`` (fused, eval mode) over ``pairs``."""
    fused = reparameterize(net)
    scores = []
    for pair in pairs:
        lr = torch.from_numpy(np.ascontiguousarray(pair.lr.transpose(2, 0, 1)))[None]
        sr = fused(lr)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
        scores.append(psnr_y(sr, pair.hr, scale))
    return float(np.mean(scores))


@dataclass
class Curve:
    """PSNR vs training minutes; ``rows``: (minutes, iterations, loadavg, {set: psnr})."""

    bicubic: dict[str, float]
    rows: list[tuple[float, int, float, dict[str, float]]] = field(default_factory=list)


def training_options(args: argparse.Namespace) -> training_speed.SpeedOptions:
    """LIPTModel's ``train.amp`` / ``train.channels_last`` for ``--amp`` / ``--channels-last``."""
    return training_speed.SpeedOptions(None if args.amp == 'none' else args.amp, args.channels_last)


def lr_at(step: int, elapsed: float, budget: float, base_lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay in *time* down to ``min_ratio * base_lr``."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    progress = min(1.0, elapsed / budget)
    return base_lr * warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args: argparse.Namespace, train_pairs: list[SRPair], test_sets: dict[str, list[SRPair]],
          report: Callable[[Curve], None] = lambda curve: None) -> Curve:
    """Train for ``args.minutes`` of training time (``args.clock``: process CPU or wall), evaluating every
    ``args.eval_every`` minutes; ``report(curve)`` runs after each evaluation."""
    net = LIPT(**preset_config(args.preset, args.scale))
    if args.init == 'zero':
        zero_init_residual_(net)
    speed = training_options(args)
    training_speed.prepare_training_network(net, net, speed)  # channels-last
    device = torch.device('cpu')
    scaler = training_speed.grad_scaler(speed, device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99))
    dataset = PairedMemoryDataset(train_pairs, args.scale, gt_size=args.gt_size)
    sampler = RandomSampler(dataset, replacement=True, num_samples=10 ** 9)
    batches = iter(DataLoader(dataset, batch_size=args.batch, sampler=sampler, num_workers=0))
    curve = Curve({name: bicubic_psnr(pairs, args.scale) for name, pairs in test_sets.items()})
    budget, every = args.minutes * 60.0, args.eval_every * 60.0
    clock = time.process_time if args.clock == 'cpu' else time.perf_counter

    def evaluate(elapsed: float, step: int) -> None:
        scores = {name: fused_psnr(net, pairs, args.scale) for name, pairs in test_sets.items()}
        curve.rows.append((elapsed / 60, step, os.getloadavg()[0], scores))
        line = '  '.join(f'{n} {s:.2f} (bicubic {curve.bicubic[n]:.2f})' for n, s in scores.items())
        print(f'[{elapsed / 60:6.2f} min, {step:6d} it, load {os.getloadavg()[0]:.1f}] {line}', flush=True)
        report(curve)

    evaluate(0.0, 0)
    elapsed, step, next_eval, loss_sum = 0.0, 0, every, 0.0
    net.train()
    while elapsed < budget:
        start = clock()
        for group in optimizer.param_groups:
            group['lr'] = lr_at(step, elapsed, budget, args.lr, args.warmup, args.min_lr_ratio)
        batch = next(batches)
        lq, gt = batch['lq'], batch['gt']
        if speed.channels_last:
            lq, gt = training_speed.to_channels_last(lq), training_speed.to_channels_last(gt)
        with training_speed.autocast(speed, device):
            loss = nn.functional.l1_loss(net(lq), gt)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # fp16: skipped when a gradient overflowed
        scaler.update()
        step += 1
        loss_sum += float(loss.detach())
        elapsed += clock() - start
        if step % 20 == 0:
            print(f'  it {step}: {elapsed / 60:.2f} min, l1 {loss_sum / 20:.4f}', flush=True)
            loss_sum = 0.0
        if elapsed >= next_eval and elapsed < budget:
            evaluate(elapsed, step)
            next_eval += every
    evaluate(elapsed, step)
    net.train()
    if args.save:
        lipt_arch.save_model(net, args.save)
    return curve


def markdown(curve: Curve, args: argparse.Namespace, command: str, n_train: int, params: int, wall: float) -> str:
    """The curve as a markdown section (command, setup, table)."""
    sets = list(curve.bicubic)
    head = '| minutes | iterations | load avg (1 min) | ' + ' | '.join(f'{s} LIPT | {s} bicubic' for s in sets) + ' |'
    lines = [head, '|' + '---|' * (3 + 2 * len(sets))]
    for minutes, step, load, scores in curve.rows:
        cells = ' | '.join(f'{scores[s]:.2f} | {curve.bicubic[s]:.2f}' for s in sets)
        lines.append(f'| {minutes:.1f} | {step} | {load:.1f} | {cells} |')
    return '\n'.join([
        '## LIPT-tiny x2 on T91, 2-core CPU', '',
        f'Command: `{command}`', '',
        f'Setup: LIPT-{args.preset} x{args.scale} ({params / 1e6:.3f} M fused parameters, {args.init} init), '
        f'{n_train} T91 images, '
        f'HR patches {args.gt_size}, batch {args.batch}, Adam lr {args.lr:g} (warmup {args.warmup} iterations, '
        f'cosine in time to {args.min_lr_ratio:g}x), L1, no EMA, seed {args.seed}, training steps in '
        f'{training_options(args).describe()}; {torch.get_num_threads()} '
        f'torch threads on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), '
        f'torch {torch.__version__}. Minutes are training time, evaluation excluded, counted as '
        f'{"process CPU time" if args.clock == "cpu" else "wall time"}; wall time of the whole run so far '
        f'{wall / 60:.1f} min. Y-channel PSNR (dB) of the fused network, border {args.scale} cropped.', '',
        *lines, ''])


def plot(curve: Curve, path: Path) -> None:
    """PSNR vs minutes PNG (needs matplotlib)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [r[0] for r in curve.rows]
    for i, name in enumerate(curve.bicubic):
        color = f'C{i}'
        ax.plot(minutes, [r[3][name] for r in curve.rows], 'o-', color=color, label=f'{name} LIPT (fused)')
        ax.axhline(curve.bicubic[name], color=color, linestyle='--', label=f'{name} bicubic')
    ax.set_xlabel('training minutes')
    ax.set_ylabel('Y-PSNR (dB)')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--minutes', type=float, default=20.0, help='training-time budget (default 20)')
    parser.add_argument('--clock', choices=['cpu', 'wall'], default='cpu',
                        help="what the budget counts: 'cpu' = this process's CPU time (with 1 thread: the wall time "
                             "of the same run on an idle core; robust to other jobs), 'wall' = elapsed time")
    parser.add_argument('--eval-every', type=float, default=2.5, help='minutes between evaluations')
    parser.add_argument('--preset', default='tiny', choices=list(lipt_arch.PRESETS))
    parser.add_argument('--scale', type=int, default=2, choices=[2, 3, 4])
    parser.add_argument('--gt-size', type=int, default=32, help='HR patch size')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--init', choices=['zero', 'default'], default='zero',
                        help="'zero': zero-initialised residual branches (zero_init_residual); 'default': LIPT's own")
    parser.add_argument('--warmup', type=int, default=20, help='linear warmup iterations')
    parser.add_argument('--min-lr-ratio', type=float, default=0.1)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1 is much faster than 2 on a CPU shared with other jobs)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--amp', choices=['bf16', 'fp16', 'none'], default='none',
                        help="mixed precision of the training steps, as LIPTModel's train.amp (evaluation stays "
                             'float32); bf16 pays off on CPUs with AMX or AVX512-BF16')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last memory format (train.channels_last)')
    parser.add_argument('--out', type=Path, help='write the table as markdown here (e.g. docs/training.md)')
    parser.add_argument('--png', type=Path, help='write a PSNR-vs-minutes plot here')
    parser.add_argument('--save', type=Path, help='save the final fused network here (lipt_arch.load_model)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = shared_root() / 'datasets'
    folders = {'T91': root / 'train' / 'T91', **{name: root / name / 'HR' for name in TEST_SETS}}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        print(f'error: dataset folder(s) not found: {", ".join(missing)} (set LIPT_SHARED to the shared/ folder)',
              file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    wall_start = time.perf_counter()
    train_pairs = load_folder_pairs(folders['T91'], args.scale)
    test_sets = {name: load_folder_pairs(folders[name], args.scale) for name in TEST_SETS}
    params = sum(p.numel() for p in reparameterize(LIPT(**preset_config(args.preset, args.scale))).parameters())
    command = 'python ' + ' '.join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]) if argv is None else str(argv)

    def report(curve: Curve) -> None:  # after every evaluation, so a stopped run still leaves its table
        text = markdown(curve, args, command, len(train_pairs), params, time.perf_counter() - wall_start)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        if args.png and len(curve.rows) > 1:
            plot(curve, args.png)

    curve = train(args, train_pairs, test_sets, report)
    print(markdown(curve, args, command, len(train_pairs), params, time.perf_counter() - wall_start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
