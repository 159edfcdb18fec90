"""Throughput and peak memory of ``lipt infer`` on CPU, measured on the real command in a subprocess.

For each case: random-weight fused preset checkpoint, N generated images of the input size, one
``/usr/bin/time -v lipt infer`` run. Images/s comes from the command's own timing line (model loading excluded), peak
RSS from ``time -v`` (whole process: Python, torch, model, images). CPU s/image (both threads together) is the
measure that a shared machine disturbs least. Prints one markdown table row per case.

    python benchmarks/infer_cli.py                      # 1280x720 output, tiny and small x4, then 4K tiled
    python benchmarks/infer_cli.py --cases small:4:960x540:512:1
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_CASES = ['tiny:4:320x180:384:5', 'small:4:320x180:384:3', 'tiny:4:960x540:384:1', 'small:4:960x540:384:1',
                 'small:4:960x540:512:1', 'small:4:960x540:256:1', 'tiny:4:960x540:0:1']


def run_case(preset: str, scale: int, size: str, tile: int, count: int, threads: int, work: Path) -> dict:
    from lipt_arch import LIPT, preset_config, save_model

    width, height = (int(v) for v in size.split('x'))
    ckpt = work / f'{preset}_x{scale}.pth'
    if not ckpt.exists():
        torch.manual_seed(0)
        save_model(LIPT(**preset_config(preset, scale)), ckpt)
    folder = work / f'in_{size}_{count}'
    if not folder.exists():
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            cv2.imwrite(str(folder / f'{i}.png'), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    out = work / 'out'
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    lipt = [sys.executable, '-m', 'lipt_arch.cli.lipt_cli']  # the `lipt` command of this interpreter
    load_before = os.getloadavg()[0]
    proc = subprocess.run(['/usr/bin/time', '-v', *lipt, 'infer', '-i', str(folder), '-o', str(out), '--model',
                           str(ckpt), '--tile', str(tile), '--device', 'cpu', '-q'],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    seconds = _find(r'wrote \d+ image\(s\) .* in ([\d.]+) s', proc.stderr)
    cpu_seconds = _find(r'wrote \d+ image\(s\) .* \(([\d.]+) CPU s\)', proc.stderr)
    rss_kib = _find(r'Maximum resident set size \(kbytes\): (\d+)', proc.stderr)
    return dict(preset=preset, scale=scale, out=f'{width * scale}x{height * scale}', tile=tile, count=count,
                images_per_s=count / seconds, s_per_image=seconds / count,
                cpu_s_per_image=cpu_seconds / count, peak_rss_mib=rss_kib / 1024,
                load=f'{load_before:.1f} -> {os.getloadavg()[0]:.1f}')


def _find(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f'no {pattern!r} in:\n{text[-2000:]}')
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cases', nargs='*', default=DEFAULT_CASES, help='preset:scale:WxH input:tile:images')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    print(f'{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads')
    print('| preset | output | tile | images | images/s | s/image | CPU s/image | peak RSS (MiB) | load avg (1 min) |')
    print('|---|---|---|---|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            preset, scale, size, tile, count = case.split(':')
            r = run_case(preset, int(scale), size, int(tile), int(count), args.threads, Path(tmp))
            print(f"| {r['preset']} x{r['scale']} | {r['out']} | {r['tile']} | {r['count']} | "
                  f"{r['images_per_s']:.3f} | {r['s_per_image']:.2f} | {r['cpu_s_per_image']:.2f} | "
                  f"{r['peak_rss_mib']:.0f} | {r['load']} |",
                  flush=True)


if __name__ == '__main__':
    main()
