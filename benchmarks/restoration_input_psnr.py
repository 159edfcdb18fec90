"""Score the degraded inputs (noisy / JPEG) of an option file's validation or test sets: the 'before' numbers.

    python benchmarks/restoration_input_psnr.py -opt options/short_LIPT_jpeg_q10_t91.yml

Every dataset except ``train`` is built as BasicSR builds it (``phase: val``, ``scale`` from the file) and each
metric under ``val.metrics`` is computed between ``lq`` and ``gt`` exactly as validation scores a network output
(``tensor2img``: clamped to [0, 1], rounded to uint8). Prints one line per dataset. ``--save DIR`` also writes those
uint8 inputs as ``DIR/<dataset name>/<image name>.png``: pre-degraded folders for BasicSR's ``PairedImageDataset``
(``options/test_LIPT_denoise_sigma25_paired.yml``).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

import lipt_arch  # noqa: F401  (first: makes basicsr importable, registers the datasets and PSNR-B)


def input_scores(opt: dict, save_dir: str | None = None) -> dict[str, dict[str, float]]:
    """``{dataset name: {metric name: mean over images}}`` of lq against gt for every non-train dataset."""
    from basicsr.data import build_dataset  # after lipt_arch's compat shim
    from basicsr.metrics import calculate_metric
    from basicsr.utils import imwrite, tensor2img

    metrics = opt['val']['metrics']
    results = {}
    for phase, dataset_opt in opt['datasets'].items():
        if phase.split('_')[0] == 'train':
            continue
        dataset = build_dataset(dict(dataset_opt, phase='val', scale=opt.get('scale', 1)))
        totals = dict.fromkeys(metrics, 0.0)
        for item in dataset:
            data = {'img': tensor2img([item['lq']]), 'img2': tensor2img([item['gt']])}
            if save_dir:
                name = os.path.splitext(os.path.basename(item['lq_path']))[0]
                imwrite(data['img'], os.path.join(save_dir, dataset_opt['name'], f'{name}.png'))
            for name, metric_opt in metrics.items():
                totals[name] += float(calculate_metric(data, metric_opt))
        results[dataset_opt['name']] = {name: total / len(dataset) for name, total in totals.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='option YAML with datasets and val.metrics')
    parser.add_argument('--save', metavar='DIR', help='also write the degraded inputs as PNGs under DIR/<dataset>/')
    args = parser.parse_args()
    opt = yaml.safe_load(Path(args.opt).read_text())
    for name, scores in input_scores(opt, args.save).items():
        print(f'{name} input: ' + ' / '.join(f'{k} {v:.4f}' for k, v in scores.items()), flush=True)


if __name__ == '__main__':
    main()
