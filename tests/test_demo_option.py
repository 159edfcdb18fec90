"""options/demo_LIPT_x2.yml runs end to end (a few iterations) and writes what the README promises."""
from __future__ import annotations

import yaml

import lipt_arch

from .basicsr_helpers import start_basicsr, write_options
from .conftest import REPO

DEMO = REPO / 'options' / 'demo_LIPT_x2.yml'


def test_demo_option_is_a_cpu_lipt_run_on_skimage_photos():
    opt = yaml.safe_load(DEMO.read_text())
    assert opt['model_type'] == 'LIPTModel' and opt['num_gpu'] == 0
    assert opt['network_g']['type'].startswith('LIPT')
    assert {d['type'] for d in opt['datasets'].values()} == {'SkimageSRDataset'}
    assert opt['val']['compare_bicubic'] is True
    assert opt['val']['metrics']['psnr']['test_y_channel'] is True


def test_demo_runs_a_few_iterations_and_writes_its_outputs(tmp_path):
    opt = yaml.safe_load(DEMO.read_text())
    opt['train'].update(total_iter=2, warmup_iter=1)
    opt['train']['scheduler']['periods'] = [2]
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    # fewer, smaller images than the demo so that the test takes seconds
    opt['datasets']['train'].update(images=['astronaut'], batch_size_per_gpu=2, dataset_enlarge_ratio=1)
    opt['datasets']['val'].update(images=['chelsea'], center_crop=64)
    path = write_options(opt, tmp_path / 'demo.yml')

    proc = start_basicsr(['train', '-opt', str(path)], cwd=tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    summary = [line for line in out.splitlines() if line.startswith('Fused LIPT:')]
    assert summary and 'bicubic: PSNR' in summary[-1], out[-2000:]

    experiment = tmp_path / 'experiments' / opt['name']
    assert (experiment / 'visualization' / 'chelsea_bicubic_LIPT_GT.png').is_file()
    assert (experiment / 'models' / 'net_g_latest.pth').is_file()
    fused = lipt_arch.load_model(experiment / 'models' / 'net_g_deploy_latest.pth')
    assert fused.config['deploy'] and fused.config['num_feat'] == opt['network_g']['num_feat']
