"""LIPT as the generator of BasicSR's own training option files: train a few iterations of each and check the result.

    python benchmarks/drop_in.py [--iters 4] [--ema-decay 0.05] [--only SRModel ...] [--zero-init] [--cpu-sized]
                                 [--score] [--time-validation]

BasicSR 1.4.2's option files (copies in ``$LIPT_SHARED/basicsr_options``, default ``../shared``) stand for an
experiment a user already runs. :func:`adapt` changes only what any user must, and the network:

- ``network_g: {type: LIPT_tiny, upscale: <scale>}``; ``num_gpu: 0``; data loading in the main process;
- data paths: the training folders become HR images from ``$LIPT_SHARED/datasets/train`` (BSD200) with their
  MATLAB-bicubic LR, validation folders Set5 / Set14 HR (modcropped) with bicubic LR (:func:`prepare_data`), a
  Real-ESRGAN ``meta_info`` file listing those HR images;
- a short schedule (``total_iter``, validation and checkpoint frequencies, scheduler milestones / periods);
- no VGG19 download: ``train.perceptual_opt`` removed; pretrained paths of the old generator removed.

Each run is checked: training finishes, ``params_ema``'s BatchNorm statistics are no longer their initial values and
the EMA network (with ``--ema-decay``, default 0.05, so that it must stay close) gives nearly the training network's
output, validation ran on the fused network, and ``lipt infer`` opens ``net_g_<iter>.pth``. ``--time-validation``
also times one Set5 validation of each model type on the fused and on the unfused network (nothing else may run).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lipt_arch  # noqa: E402,F401  (registers LIPT, fixes basicsr)
from benchmarks.machine import describe, load_average  # noqa: E402

SHARED = Path(os.environ.get('LIPT_SHARED', REPO.parent / 'shared'))
STOCK = {  # model type -> BasicSR's option file (../shared/basicsr_options) and the model type it is run as
    'SRModel': 'train_MSRResNet_x4.yml',
    'SwinIRModel': 'train_SwinIR_SRx4_scratch.yml',
    'SRGANModel': 'train_MSRGAN_x4.yml',
    'ESRGANModel': 'train_MSRGAN_x4.yml',  # the same GAN recipe with ESRGAN's relativistic discriminator loss
    'RealESRGANModel': 'train_realesrgan_x4plus.yml',
}
ENV = {**os.environ, 'PYTHONPATH': str(REPO)}  # runs in subprocesses: BasicSR's logger writes one file per process
TRAIN_IMAGES = 16  # BSD200 images (481x321) for the short runs: at least one batch of each stock file
SCALE = 4


def stock_options(model_type: str) -> dict[str, Any]:
    """BasicSR's option file for ``model_type`` as a dict (``model_type`` set; ESRGANModel reuses MSRGAN's)."""
    path = SHARED / 'basicsr_options' / STOCK[model_type]
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found (set LIPT_SHARED to the shared/ folder)')
    opt = yaml.safe_load(path.read_text())
    opt['model_type'] = model_type
    return opt


def prepare_data(root: Path, scale: int = SCALE) -> dict[str, Path]:
    """HR / bicubic-LR folders under ``root`` from ../shared images: ``train`` (BSD200, HR modcropped), ``Set5`` and
    ``Set14`` (HR modcropped to 12 like BasicSR's GTmod12), and a ``meta_info.txt`` of the training HR names."""
    from lipt_arch.data.sr_pairs import bicubic_downsample, list_images, read_rgb_uint8

    sources = {'train': list_images(SHARED / 'datasets' / 'train' / 'BSD200')[:TRAIN_IMAGES],
               'Set5': list_images(SHARED / 'datasets' / 'Set5' / 'HR'),
               'Set14': list_images(SHARED / 'datasets' / 'Set14' / 'HR')}
    folders = {}
    for name, files in sources.items():
        hr_dir, lr_dir = root / name / 'HR', root / name / f'LRbicx{scale}'
        folders[name], folders[f'{name}_lq'] = hr_dir, lr_dir
        if hr_dir.is_dir() and lr_dir.is_dir() and len(list(lr_dir.iterdir())) == len(files):
            continue
        hr_dir.mkdir(parents=True, exist_ok=True)
        lr_dir.mkdir(parents=True, exist_ok=True)
        for path in files:
            rgb = read_rgb_uint8(path)
            h, w = rgb.shape[0] // 12 * 12, rgb.shape[1] // 12 * 12
            hr = rgb[:h, :w].astype(np.float32) / 255.0
            lr = bicubic_downsample(hr, scale)
            cv2.imwrite(str(hr_dir / path.name), cv2.cvtColor(rgb[:h, :w], cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(lr_dir / path.name), cv2.cvtColor((lr * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
    meta = root / 'meta_info.txt'
    meta.write_text(''.join(f'{p.name}\n' for p in sorted(folders['train'].iterdir())))
    folders['meta_info'] = meta
    return folders


def adapt(opt: Mapping[str, Any], data: Mapping[str, Path], iters: int, name: str) -> dict[str, Any]:
    """``opt`` (a stock BasicSR option dict) with only the changes of the module docstring."""
    opt = copy.deepcopy(dict(opt))
    opt['name'] = name
    opt['num_gpu'] = 0
    opt['network_g'] = {'type': 'LIPT_tiny', 'upscale': opt.get('scale', SCALE)}
    for phase, dataset in opt['datasets'].items():
        dataset.pop('meta_info_file', None)
        if dataset['type'] == 'RealESRGANDataset':
            dataset.update(dataroot_gt=str(data['train']), meta_info=str(data['meta_info']))
        elif phase == 'train':
            dataset.update(dataroot_gt=str(data['train']), dataroot_lq=str(data['train_lq']))
        else:
            folder = 'Set14' if 'Set14' in dataset['name'] else 'Set5'
            dataset.update(dataroot_gt=str(data[folder]), dataroot_lq=str(data[f'{folder}_lq']))
        if phase == 'train':
            dataset['num_worker_per_gpu'] = 0
    for key in list(opt['path']):
        if key.startswith('pretrain_network'):
            opt['path'][key] = None
    train = opt['train']
    train['total_iter'] = iters
    train.pop('perceptual_opt', None)
    scheduler = train['scheduler']
    if 'milestones' in scheduler:
        scheduler['milestones'] = [iters * (i + 1) for i in range(len(scheduler['milestones']))]
    if 'periods' in scheduler:
        scheduler['periods'] = [iters] * len(scheduler['periods'])
    if 'val' in opt:
        opt['val']['val_freq'] = iters
    opt['logger'].update(print_freq=1, save_checkpoint_freq=iters, use_tb_logger=False)
    return opt


def cpu_sized(opt: dict[str, Any]) -> dict[str, Any]:
    """Real-ESRGAN's 4-GPU batch (12 pairs of 256-pixel patches, a 180-pair pool) cut to 4 pairs of 128 pixels and a
    pool of 4, for CPU time (minutes per iteration otherwise); other option files are returned as they are."""
    if opt['model_type'] not in ('RealESRNetModel', 'RealESRGANModel'):
        return opt
    opt = copy.deepcopy(opt)
    opt.update(gt_size=128, queue_size=4)
    opt['datasets']['train'].update(gt_size=128, batch_size_per_gpu=4)
    return opt


def with_validation(opt: dict[str, Any], data: Mapping[str, Path]) -> dict[str, Any]:
    """Add Set5 validation (PSNR) to an option dict that has none (Real-ESRGAN's file validates nothing)."""
    if 'val' not in opt:
        opt['datasets']['val'] = {'name': 'Set5', 'type': 'PairedImageDataset', 'dataroot_gt': str(data['Set5']),
                                  'dataroot_lq': str(data['Set5_lq']), 'io_backend': {'type': 'disk'}}
        opt['val'] = {'val_freq': opt['train']['total_iter'], 'save_img': False,
                      'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': False}}}
    return opt


def set5_psnr(state: Mapping[str, torch.Tensor], scale: int = SCALE) -> float:
    """Set5 Y-PSNR (dB, the paper's protocol) of the fused LIPT with weights ``state``."""
    from lipt_arch import LIPT, reparameterize
    from lipt_arch.checkpoints import infer_lipt_config
    from lipt_arch.zoo.evaluate import network_upscaler, score_folder

    net = LIPT(**infer_lipt_config(state))
    net.load_state_dict(state)
    return score_folder(network_upscaler(reparameterize(net)), SHARED / 'datasets' / 'Set5' / 'HR', scale)['psnr']


def check_experiment(folder: Path, iters: int, image: Path, score: bool = False) -> dict[str, Any]:
    """What a finished run left in ``experiments/<name>``: BatchNorm statistics of ``params`` / ``params_ema``, the
    two networks' outputs on ``image``, the validation log lines, and whether ``lipt infer``, ``lipt convert`` and
    spandrel (``None`` when it is not installed) open the checkpoint.
    ``score``: also the Set5 Y-PSNR of ``params``, of ``params_ema`` and of ``params_ema`` with the initial BatchNorm
    statistics that BasicSR's own EMA would have left (running mean 0, variance 1)."""
    from lipt_arch import LIPT, reparameterize
    from lipt_arch.checkpoints import infer_lipt_config

    checkpoint = folder / 'models' / f'net_g_{iters}.pth'
    if not checkpoint.is_file():
        return {'error': f'{checkpoint} not written'}
    saved = torch.load(checkpoint, map_location='cpu', weights_only=True)
    params, ema = saved['params'], saved['params_ema']
    variances = [k for k in ema if k.endswith('running_var')]
    moved = sum(not torch.equal(ema[k], torch.ones_like(ema[k])) for k in variances)
    lr = cv2.imread(str(image), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0
    x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
    outputs = []
    for state in (params, ema):
        net = LIPT(**infer_lipt_config(state))
        net.load_state_dict(state)
        with torch.no_grad():
            outputs.append(reparameterize(net)(x).clamp(0, 1))
    mse = float(((outputs[0] - outputs[1]) ** 2).mean())
    log = '\n'.join(p.read_text() for p in folder.glob('train_*.log'))
    psnr = re.findall(r'# psnr: ([0-9.]+)', log)
    out_png, converted = folder / 'lipt_infer_check.png', folder / 'converted.safetensors'
    infer = subprocess.run([sys.executable, '-m', 'lipt_arch.cli.lipt_cli', 'infer', '-q', '-i', str(image), '-o',
                            str(out_png), '--model', str(checkpoint)], capture_output=True, text=True,
                           env=ENV)
    convert = subprocess.run([sys.executable, '-m', 'lipt_arch.cli.lipt_cli', 'convert', str(checkpoint),
                              str(converted)], capture_output=True, text=True, env=ENV)
    spandrel_scale = None
    try:
        import spandrel

        from lipt_arch.integrations import spandrel as lipt_spandrel

        lipt_spandrel.install()
        spandrel_scale = spandrel.ModelLoader().load_from_file(str(checkpoint)).scale
    except ImportError:
        pass
    scores = {}
    if score:
        stale = {k: torch.zeros_like(v) if k.endswith('running_mean') else torch.ones_like(v)
                 if k.endswith('running_var') else v for k, v in ema.items()}
        scores = {'set5_params': set5_psnr(params), 'set5_ema': set5_psnr(ema), 'set5_ema_stale_bn': set5_psnr(stale)}
    return {**scores, 'batchnorm_layers': len(variances), 'ema_stats_moved': moved,
            'ema_vs_params_psnr': 10 * math.log10(1 / max(mse, 1e-12)),
            'fused_validation': 'Validation runs the fused LIPT' in log, 'val_psnr': float(psnr[-1]) if psnr else None,
            'lipt_infer': infer.returncode == 0 and out_png.is_file(), 'lipt_infer_error': infer.stderr.strip()[-300:],
            'lipt_convert': convert.returncode == 0 and converted.is_file(), 'spandrel_scale': spandrel_scale,
            'deploy': (folder / 'models' / f'net_g_deploy_{iters}.pth').is_file()}


def time_validation(opt: dict[str, Any], root: Path, repeats: int = 3) -> tuple[float, float]:
    """Seconds of one validation of ``opt``'s model on the fused and on the unfused network (medians)."""
    from basicsr.data import build_dataloader, build_dataset
    from basicsr.models import build_model
    from basicsr.models.sr_model import SRModel

    opt = copy.deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, auto_resume=False, root_path=str(root))
    for phase, dataset in opt['datasets'].items():
        dataset.update(phase=phase.split('_')[0], scale=opt['scale'])
    exp = root / 'experiments' / f'{opt["name"]}_timing'
    opt['path'].update(experiments_root=str(exp), models=str(exp / 'models'), log=str(exp),
                       training_states=str(exp / 'training_states'), visualization=str(exp / 'visualization'))
    model = build_model(opt)
    val = next(v for k, v in opt['datasets'].items() if k.startswith('val'))
    loader = build_dataloader(build_dataset(val), val, num_gpu=0, dist=False, sampler=None)
    fused, unfused = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        model.validation(loader, 0, None, False)
        fused.append(time.perf_counter() - start)
        start = time.perf_counter()
        SRModel.nondist_validation(model, loader, 0, None, False)  # BasicSR's own path: the unfused network
        unfused.append(time.perf_counter() - start)
    return float(np.median(fused)), float(np.median(unfused))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=4, help='training iterations per run (default 4)')
    parser.add_argument('--ema-decay', type=float, default=0.05, help='train.ema_decay of the runs (default 0.05)')
    parser.add_argument('--only', nargs='+', choices=sorted(STOCK), help='model types to run (default: all)')
    parser.add_argument('--out', type=Path, default=Path('drop_in_runs'), help='working folder (default drop_in_runs)')
    parser.add_argument('--time-validation', action='store_true', help='time fused vs unfused validation')
    parser.add_argument('--zero-init', action='store_true', help='network_g.zero_init_residual: true (README)')
    parser.add_argument('--cpu-sized', action='store_true', help="Real-ESRGAN: 4 pairs of 128-pixel patches a batch")
    parser.add_argument('--score', action='store_true',
                        help="Set5 Y-PSNR of params, params_ema, and params_ema with BasicSR's stale BatchNorm stats")
    args = parser.parse_args(argv)
    if args.iters < 1 or not 0 <= args.ema_decay < 1:
        parser.error('--iters must be >= 1 and --ema-decay in [0, 1)')
    root = args.out.resolve()
    data = prepare_data(root / 'data')
    before = load_average()
    rows = []
    for model_type in args.only or list(STOCK):
        name = f'drop_in_{model_type}'
        opt = with_validation(adapt(stock_options(model_type), data, args.iters, name), data)
        if args.cpu_sized:
            opt = cpu_sized(opt)
        if args.zero_init:
            opt['network_g']['zero_init_residual'] = True
        opt['train']['ema_decay'] = args.ema_decay
        option_file = root / f'{name}.yml'
        option_file.write_text(yaml.safe_dump(opt, sort_keys=False))
        start = time.perf_counter()
        run = subprocess.run([sys.executable, '-m', 'lipt_arch.train', '-opt', str(option_file)],
                             cwd=root, env=ENV, capture_output=True, text=True)
        seconds, status = time.perf_counter() - start, run.returncode
        row = {'model_type': model_type, 'stock file': STOCK[model_type], 'exit': status, 'seconds': seconds}
        if status:
            row['error'] = run.stderr.strip()[-500:]
        else:
            row.update(check_experiment(root / 'experiments' / name, args.iters, data['Set5_lq'] / 'baby.png',
                                        args.score))
        if args.time_validation and status == 0:
            row['val_fused_s'], row['val_unfused_s'] = time_validation(opt, root)
        rows.append(row)
        print(row, flush=True)
    print('\n' + describe(before, load_average()))
    print('| model type (stock file) | trains | EMA BN stats moved | EMA vs params output (dB) | fused validation '
          '| val PSNR | lipt infer / convert / spandrel open net_g | validation fused / unfused (s) '
          '| Set5 Y-PSNR params / EMA / EMA with stale BN |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        timing = f'{r["val_fused_s"]:.2f} / {r["val_unfused_s"]:.2f}' if 'val_fused_s' in r else ''
        scores = (f'{r["set5_params"]:.2f} / {r["set5_ema"]:.2f} / {r["set5_ema_stale_bn"]:.2f}'
                  if 'set5_ema' in r else '')
        if r['exit'] or 'error' in r:
            error = r.get('error', '')[-80:]
            print(f'| {r["model_type"]} ({r["stock file"]}) | exit {r["exit"]}: {error} |' + ' |' * 7)
            continue
        opens = ' / '.join('yes' if ok else 'NO' for ok in (r['lipt_infer'], r['lipt_convert'], r['spandrel_scale']))
        print(f'| {r["model_type"]} ({r["stock file"]}) | yes, {r["seconds"]:.0f} s | {r["ema_stats_moved"]} / '
              f'{r["batchnorm_layers"]} | {r["ema_vs_params_psnr"]:.1f} | {"yes" if r["fused_validation"] else "NO"} '
              f'| {r["val_psnr"]} | {opens} | {timing} | {scores} |')
    return 0 if all(r['exit'] == 0 and r.get('fused_validation') and r.get('lipt_infer') for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
