"""benchmarks/latency.py runs end to end on a small input and reports every goal it has rows for (not a timing test)."""
import argparse
import sys

import torch

from .conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks import latency  # noqa: E402


def test_latency_table_rows_and_goals(monkeypatch):
    monkeypatch.setattr(latency, 'cpu_info', lambda: {'isa': ['AVX2', 'AVX-512', 'AVX512-BF16']})
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
                          "LIPT-Small bf16 vs authors' converted fp32 (target of a CPU with AVX512-BF16)",
                          'LIPT-Small bf16 conv floor vs LIPT-Small bf16 (target: within 1.3x of the floor)',
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


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx avx2 avx512f avx512_bf16 amx_tile amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
"""


def test_machine_header_names_cpu_isa_torch_threads_and_load():
    from benchmarks import machine

    text = machine.describe((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), cpuinfo=CPUINFO)
    assert text.startswith('CPU: Intel(R) Xeon(R) Platinum 8480+, ')
    assert 'ISA AVX2, AVX-512, AVX512-BF16, AMX (torch CPU capability ' in text
    assert f'torch {torch.__version__}; threads {torch.get_num_threads()}.' in text
    assert 'Load average (1, 5, 15 min): 0.10, 0.20, 0.30 before; 0.40, 0.50, 0.60 after.' in text
    assert machine.cpu_info('flags\t: avx avx2\n')['isa'] == ['AVX2']


def test_busy_machine_is_flagged_by_the_stated_rule():
    from benchmarks import machine

    assert machine.load_warning((0.9, 0, 0), (1.0, 0, 0), cpus=2) is None  # 1.0 <= 0.5 per CPU x 2
    warning = machine.load_warning((0.2, 0, 0), (1.1, 0, 0), cpus=2)
    assert warning.startswith('WARNING: busy machine') and '1.10 after' in warning
    assert machine.load_warning((0.2, 0, 0), (2.9, 0, 0), cpus=2, own_threads=2) is None  # its own 2 threads
    assert machine.load_warning((0.2, 0, 0), (3.1, 0, 0), cpus=2, own_threads=2) is not None
    busy = machine.describe((9.0, 8.0, 7.0), (12.0, 9.0, 7.0), cpuinfo=CPUINFO)
    assert busy.splitlines()[-1].startswith('WARNING: busy machine')


def test_markdown_table_starts_with_the_machine_header():
    args = argparse.Namespace(height=12, width=20, scale=2, clock='cpu', repeats=1, device_name='CPU',
                              machine='CPU: test machine')
    rows = [dict(name='LIPT-Tiny fused (ours)', dtype='fp32', params=1, macs=None, seconds=0.1)]
    table = latency.markdown(rows, [], [], args, {})
    assert table.splitlines()[:3] == ['CPU: test machine', '', table.splitlines()[2]]
    assert table.splitlines()[2].startswith('Device: CPU; threads: ')


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


def test_goal_ratios_are_medians_of_per_round_ratios():
    """Rows that took turns pair up by round: the goal is the median of the per-round ratios (here 1.25x, where the
    ratio of the medians would be 0.91x), with their range."""
    rows = [dict(name='SAFMN', dtype='fp32', seconds=1.0, rounds=[1.0, 2.0, 1.0]),
            dict(name='LIPT-Tiny fused (ours)', dtype='fp32', seconds=1.1, rounds=[1.1, 1.6, 0.8])]
    goals = dict(latency.goal_lines(rows))
    assert goals == {'LIPT-Tiny fp32 vs SAFMN (>= 1 means no slower)': '1.25x [rounds 0.91-1.25x] / 1.0x (met)'}


def test_compiled_peer_row_equals_the_eager_peer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3)).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(latency.Compiled(net)(x), net(x), atol=1e-5)


def test_compiled_peer_goals_and_the_floor_against_them():
    rows = [dict(name='SPAN + torch.compile', dtype='fp32', seconds=0.5),
            dict(name='LIPT-Tiny fused + torch.compile (ours)', dtype='fp32', seconds=0.625),
            dict(name='LIPT-Tiny: its 3x3 convs alone (conv-bound floor)', dtype='fp32', seconds=0.4)]
    goals = dict(latency.goal_lines(rows))
    assert goals == {'LIPT-Tiny fp32 + torch.compile vs SPAN + torch.compile': '0.80x / 1.0x (not met)',
                     'LIPT-Tiny fp32 3x3 convs alone vs SPAN + torch.compile (upper bound)':
                         '1.25x / 1.0x (reachable in principle)'}


def test_bf16_goals_per_processor_class_and_against_bf16_peers(monkeypatch):
    """Targets: LIPT-Small bf16 >= 6x the authors' fp32 on AMX, >= 3.2x on AVX512-BF16 without it; within 1.3x of
    its own bf16 conv floor; LIPT-Tiny bf16 no slower than SAFMN and SPAN in bf16, eager and compiled."""
    rows = [dict(name="LIPT-Small converted (authors' structure)", dtype='fp32', seconds=2.0),
            dict(name='LIPT-Small fused (ours)', dtype='bf16', seconds=0.5),
            dict(name='LIPT-Small fused + torch.compile (ours)', dtype='bf16', seconds=0.4),
            dict(name='LIPT-Small: its 3x3 convs alone (conv-bound floor)', dtype='bf16', seconds=0.36),
            dict(name='LIPT-Tiny fused + torch.compile (ours)', dtype='bf16', seconds=0.2),
            dict(name='SPAN + torch.compile', dtype='bf16', seconds=0.15)]
    for isa, goal in ((['AVX512-BF16'], '3.2x'), (['AVX512-BF16', 'AMX'], '6.0x')):
        monkeypatch.setattr(latency, 'cpu_info', lambda isa=isa: {'isa': isa})
        goals = dict(latency.goal_lines(rows))
        cls = isa[-1]
        assert goals[f"LIPT-Small bf16 vs authors' converted fp32 (target of a CPU with {cls})"] == \
            f"4.00x / {goal} ({'met' if cls != 'AMX' else 'not met'})"
        assert goals['LIPT-Small bf16 conv floor vs LIPT-Small bf16 + torch.compile (target: within 1.3x of the '
                     'floor)'] == '0.90x / 0.8x (met)'
        assert goals['LIPT-Small bf16 conv floor vs LIPT-Small bf16 (target: within 1.3x of the floor)'] == \
            '0.72x / 0.8x (not met)'
        assert goals['LIPT-Tiny bf16 + torch.compile vs SPAN bf16 + torch.compile (>= 1 means no slower)'] == \
            '0.75x / 1.0x (not met)'


def test_peer_in_bf16_is_the_peer_cast_end_to_end():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3)).eval()
    x = torch.rand(1, 3, 16, 16)
    cast = latency.InPrecision(net, 'bf16')
    assert next(cast.parameters()).dtype == torch.bfloat16 and next(net.parameters()).dtype == torch.float32
    with torch.inference_mode():
        y, ref = cast(x), net(x)
    assert y.dtype == torch.float32 and not torch.equal(y, ref) and torch.allclose(y, ref, atol=0.05)
