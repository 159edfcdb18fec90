"""benchmarks/latency.py runs end to end on a small input and reports every goal it has rows for (not a timing test)."""
import argparse
import sys

import torch

from .conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks import latency  # noqa: E402


def test_latency_table_rows_and_goals():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 20)
    rows = latency.time_rows(latency.lipt_entries(x, scale=2, low='bf16', compile_=False), x.device, repeats=1)
    names = {(r['name'], r['dtype']) for r in rows}
    for preset in ('Small', 'Tiny'):
        assert (f'LIPT-{preset} fused (ours)', 'fp32') in names
        assert (f'LIPT-{preset} fused (ours)', 'bf16') in names
        assert (f"LIPT-{preset} converted (authors' structure)", 'fp32') in names
        assert (f'LIPT-{preset}: its 3x3 convs alone (conv-bound floor)', 'bf16') in names
    assert all(r['seconds'] > 0 for r in rows)
    small = next(r for r in rows if r['name'] == 'LIPT-Small fused (ours)')
    assert small['params'] == sum(p.numel() for p in latency.reparameterize(
        latency.LIPT(**latency.preset_config('small', 2))).parameters())
    assert small['macs'] > 0
    baseline = {r['name'].split(' ')[0]: r['seconds'] for r in rows if "converted (authors'" in r['name']}
    args = argparse.Namespace(height=12, width=20, scale=2, clock='wall', repeats=1, device_name='CPU')
    table = latency.markdown(rows, [], [], args, baseline)
    assert "| LIPT-Small converted (authors' structure) | fp32 |" in table and '| 1.00x |' in table
    goals = dict(latency.goal_lines(rows))
    assert set(goals) == {"LIPT-Small fp32 vs authors' converted",
                          "LIPT-Small fp32 3x3 convs alone vs authors' converted (upper bound)",
                          "LIPT-Small bf16 vs authors' converted fp32",
                          "LIPT-Small bf16 3x3 convs alone vs authors' converted fp32 (upper bound)"}
    assert all(value.endswith(('(met)', '(not met)', '(reachable in principle)', '(out of reach on this machine)'))
               for value in goals.values())


def test_training_goal_lines():
    train = [dict(name="LIPT-Tiny train step (authors' structure)", seconds=3.0),
             dict(name='LIPT-Tiny train step (ours)', seconds=2.5),
             dict(name='LIPT-Tiny train step (ours + compile_rep_convs)', seconds=1.5)]
    goals = dict(latency.goal_lines([], train))
    assert goals["LIPT-Tiny training step, ours vs authors' structure"] == '1.20x / 1.5x (not met)'
    assert goals["LIPT-Tiny training step, ours + compile_rep_convs vs authors' structure"] == '2.00x / 1.5x (met)'


def test_amp_training_goal_lines():
    train = [dict(name="LIPT-Small train step (authors' structure)", seconds=6.0),
             dict(name='LIPT-Small train step (ours, bf16 AMP)', seconds=2.0),
             dict(name='LIPT-Small train step (ours, bf16 AMP + channels_last)', seconds=2.5)]
    goals = dict(latency.goal_lines([], train))
    assert goals["LIPT-Small training step, ours, bf16 AMP vs authors' structure fp32"] == \
        '3.00x / 3.0x on AMX CPUs, 2.0x on AVX512-BF16 CPUs (met)'
    assert goals["LIPT-Small training step, ours, bf16 AMP + channels_last vs authors' structure fp32"].endswith(
        '(AVX512-BF16 goal met)')


def test_amp_training_step_runs_and_trains():
    """The bf16 AMP + channels-last step of the --train rows trains: finite losses that change step to step."""
    torch.manual_seed(0)
    speed = latency.SpeedOptions('bf16', channels_last=True)
    step = latency._train_step('tiny', speed, torch.device('cpu'), batch=1, patch=16)
    losses = [float(step()) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] != losses[1]
