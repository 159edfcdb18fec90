"""Time one LIPT training step (forward, L1 loss, backward, Adam) in the training form and in the fused form.

The fused form (every six-branch conv one 3x3 conv, no BatchNorm) trains as a plain conv + attention network; this
measures how much cheaper its step is than the six-branch form's, in float32 and under bf16 autocast, with the
six-branch convs eager or compiled (``train.compile: rep_convs``). Not a unit test: a measurement; run it on an idle
machine (the load average is printed with the table).

    python benchmarks/train_step.py --scale 2 --batch 16 --lr-size 48 --steps 6
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import describe  # noqa: E402
from lipt_arch import LIPT, preset_config, reparameterize  # noqa: E402
from lipt_arch.archs import compile_rep_convs  # noqa: E402

FORMS = ('six-branch', 'six-branch, compiled rep_convs', 'fused')


def build(form: str, preset: str, scale: int) -> nn.Module:
    """A LIPT of ``preset`` in ``form`` (one of :data:`FORMS`), in train mode with trainable parameters."""
    net = LIPT(**preset_config(preset, upscale=scale))
    if form == 'fused':
        net = reparameterize(net)
        for p in net.parameters():
            p.requires_grad_(True)
    elif form == 'six-branch, compiled rep_convs':
        compile_rep_convs(net)
    return net.train()


def step_seconds(net: nn.Module, lq: torch.Tensor, gt: torch.Tensor, amp: bool, steps: int, warmup: int
                 ) -> list[float]:
    """Seconds of each of ``steps`` timed training steps (after ``warmup`` untimed ones)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        context = torch.autocast('cpu', dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with context:
            loss = (net(lq).float() - gt).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', default='tiny', choices=['tiny', 'small', 'base'])
    parser.add_argument('--scale', type=int, default=2, choices=[2, 3, 4])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--lr-size', type=int, default=48, help='LR patch side in pixels')
    parser.add_argument('--steps', type=int, default=6, help='timed steps per row (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first (compilation happens here)')
    parser.add_argument('--amp', choices=['both', 'fp32', 'bf16'], default='both')
    args = parser.parse_args(argv)
    for name in ('batch', 'lr_size', 'steps'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    torch.manual_seed(0)
    lq = torch.rand(args.batch, 3, args.lr_size, args.lr_size)
    gt = torch.rand(args.batch, 3, args.lr_size * args.scale, args.lr_size * args.scale)
    precisions = {'both': (False, True), 'fp32': (False,), 'bf16': (True,)}[args.amp]
    before = os.getloadavg()
    rows = []
    for amp in precisions:
        for form in FORMS:
            seconds = statistics.median(step_seconds(build(form, args.preset, args.scale), lq, gt, amp, args.steps,
                                                     args.warmup))
            rows.append((form, 'bf16 autocast' if amp else 'fp32', seconds))
    print(f'LIPT-{args.preset} x{args.scale} training step, batch {args.batch} of {args.lr_size}x{args.lr_size} LR '
          f'patches, median of {args.steps} steps')
    print('| form | precision | s / step | vs six-branch eager, same precision |')
    print('|---|---|---|---|')
    for form, precision, seconds in rows:
        base = next(s for f, p, s in rows if f == FORMS[0] and p == precision)
        print(f'| {form} | {precision} | {seconds:.3f} | {base / seconds:.2f}x |')
    print(describe(before, os.getloadavg()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
