"""Latency of fused LIPT against the authors' network structure and peer SR networks, measured in one process.

    python benchmarks/latency.py --compile --train    # CPU, 2 threads, x4, 184x320 -> 736x1280, median of 3
    python benchmarks/latency.py --device cuda        # the same table on a GPU (fp32, fp16 and bf16)

Rows: our fused LIPT in fp32 and bf16 (fp16 and bf16 on CUDA), with ``--compile`` also under ``torch.compile`` (Inductor
freezing, as are SAFMN and SPAN); the authors' structure restated in benchmarks/reference_structure.py (training form,
and the form after their conversion), so ratios come from one run; the conv-bound floor (the fused network's 3x3 convs
alone); peers (BasicSR's SwinIR, and SAFMN, SPAN, OmniSR from spandrel, an optional benchmark-only dependency) with
random weights on the same input and threads. All rows take turns (one run each per round), so machine drift hits them
alike; the goals are the medians of per-round ratios, with their range.
``--train`` adds the training step (ours eager, compiled, in bf16 AMP (fp16 too on CUDA), the authors' structure); on
CPU the peak RSS of tiled 4K inference with ``lipt infer`` is added (leave it out with ``--no-memory``). Writes the
table as markdown (``--markdown``) and the PSNR-vs-latency plot (``--plot``).
The authors' own figures are quoted in docs/latency.md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lipt_arch  # noqa: E402,F401
from benchmarks.machine import cpu_info, describe, load_average  # noqa: E402
from benchmarks.reference_structure import ReferenceLIPT  # noqa: E402
from benchmarks.train_t91 import shared_root  # noqa: E402
from lipt_arch import LIPT, optimize, preset_config, reparameterize  # noqa: E402
from lipt_arch.deploy.inference import DTYPES  # noqa: E402
from lipt_arch.deploy.optimized import inductor_freezing  # noqa: E402
from lipt_arch.models import training_speed  # noqa: E402
from lipt_arch.models.training_speed import SpeedOptions  # noqa: E402

# x4 Urban100 PSNR from the paper's table (LIPT_SPEC.md section 5), for the plot.
PAPER_URBAN100_X4 = {'LIPT-Tiny': 26.16, 'LIPT-Small': 26.57, 'SwinIR-light': 26.47, 'SAFMN': 25.97}


class PadToWindow(nn.Module):
    """Reflect-pad the input to a multiple of ``window`` and crop the output, as window networks' test scripts do."""

    def __init__(self, net: nn.Module, window: int, scale: int) -> None:
        super().__init__()
        self.net, self.window, self.scale = net, window, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = nn.functional.pad(x, [0, -w % self.window, 0, -h % self.window], mode='reflect')
        return self.net(x)[..., :h * self.scale, :w * self.scale]


def peers(scale: int) -> dict[str, Callable[[], nn.Module]]:
    """Peer networks with their papers' light configurations (random weights)."""
    from basicsr.archs.swinir_arch import SwinIR

    found: dict[str, Callable[[], nn.Module]] = {
        'SwinIR-light': lambda: PadToWindow(SwinIR(
            upscale=scale, img_size=64, window_size=8, img_range=1.0, depths=[6] * 4, embed_dim=60,
            num_heads=[6] * 4, mlp_ratio=2, upsampler='pixelshuffledirect'), 8, scale),
    }
    try:
        from spandrel.architectures.OmniSR import OmniSR
        from spandrel.architectures.SAFMN import SAFMN
        from spandrel.architectures.SPAN import SPAN
    except ImportError:
        print('spandrel not installed (pip install spandrel): SAFMN, SPAN, OmniSR left out', file=sys.stderr)
        return found
    found['SAFMN'] = lambda: SAFMN(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=scale)
    found['SPAN'] = lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=scale)
    found['OmniSR'] = lambda: PadToWindow(OmniSR(num_feat=64, block_num=1, res_num=5, window_size=8, up_scale=scale),
                                          8, scale)
    return found


BF16_GOALS = {'AMX': 6.0, 'AVX512-BF16': 3.2}  # target: LIPT-Small bf16 vs the authors' fp32, per processor class
PEERS_COMPILED = ('SAFMN', 'SPAN')  # with --compile also timed under torch.compile: LIPT-Tiny's compiled peers


class InPrecision(nn.Module):
    """A peer cast to ``dtype`` (bf16 / fp16) end to end, as :func:`lipt_arch.optimize` casts LIPT (faster than
    autocast for SAFMN and SPAN), channels-last in eager mode; float32 in and out. Under ``torch.compile`` Inductor
    chooses the layouts, and the weights must keep the strides of the fp32 peer compiled in the same process
    (``channels_last=False``): Dynamo's cache for the peer's class does not tell the two apart."""

    def __init__(self, net: nn.Module, dtype: str, channels_last: bool = True) -> None:
        super().__init__()
        self.dtype = DTYPES[dtype]
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.net = copy.deepcopy(net).to(self.dtype).to(memory_format=self.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype).contiguous(memory_format=self.layout)).float()


class Compiled(nn.Module):
    """``torch.compile`` of a peer with Inductor freezing: the compilation ``optimize(compile=True)`` gives LIPT."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with inductor_freezing():
            return self.compiled(x)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


CLOCK = {'wall': time.perf_counter, 'cpu': time.process_time}
clock = time.perf_counter


def round_times(runs: dict[str, Callable[[], object]], device: torch.device, repeats: int,
                warmups: int = 1) -> dict[str, list[float]]:
    """Times of each of ``runs``, one per round (wall clock, or process CPU time with ``--clock cpu``): after
    ``warmups`` calls each, the runs take turns, one call each per round, for ``repeats`` rounds, so a slow spell of
    the machine hits them alike and two runs' times of one round form a pair (:func:`paired_ratio`). CPU time is the
    steadier measure on a shared machine (use it with ``--threads 1``)."""
    for fn in runs.values():
        for _ in range(warmups):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            start = clock()
            fn()
            synchronize(device)
            times[key].append(clock() - start)
    return times


def paired_ratio(slow: dict, fast: dict) -> tuple[float, float, float]:
    """How many times faster row ``fast`` is than row ``slow``: the median over the rounds of the per-round ratio,
    and its lowest and highest (rows with ``rounds``, :func:`round_times`; the medians' ratio, thrice, otherwise).
    This VM's speed drifts 10-20 % between minutes; a ratio within one round is steadier than one of medians."""
    pairs = list(zip(slow.get('rounds', ()), fast.get('rounds', ())))
    if len(pairs) < 2 or len(slow['rounds']) != len(fast['rounds']):
        ratio = slow['seconds'] / fast['seconds']
        return ratio, ratio, ratio
    ratios = [a / b for a, b in pairs]
    return statistics.median(ratios), min(ratios), max(ratios)


def count_macs(net: nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(x)
    return counter.get_total_flops() / 2


def inference_entry(name: str, net: nn.Module, x: torch.Tensor, dtype: str = 'fp32', macs: bool = True) -> dict:
    """A table row to be timed: its ``run`` is one inference of ``net`` on ``x``; ``dtype`` labels the row (``net``
    computes in it already: a :func:`lipt_arch.optimize` form, or a peer in :class:`InPrecision`)."""

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return net(x)

    params = sum(p.numel() for p in net.parameters())
    return dict(name=name, dtype=dtype, params=params, macs=count_macs(net, x) if macs else None, run=run)


def time_rows(entries: list[dict], device: torch.device, repeats: int) -> list[dict]:
    """Time every entry's ``run`` (taking turns, :func:`round_times`); rows with ``seconds`` (the median) and
    ``rounds`` (the time of each round) instead of ``run``."""
    times = round_times({i: e['run'] for i, e in enumerate(entries)}, device, repeats)
    rows = []
    for i, entry in enumerate(entries):
        row = {k: v for k, v in entry.items() if k != 'run'}
        row['seconds'], row['rounds'] = statistics.median(times[i]), times[i]
        print(f"{row['name']:52s} {row['dtype']:5s} {row['params'] / 1e6:6.3f} M  {row['seconds']:8.3f} s", flush=True)
        rows.append(row)
    return rows


def conv_floor(net: nn.Module, x: torch.Tensor, dtype: str = 'fp32') -> Callable[[], None]:
    """A run of ``net``'s 3x3 convs alone, each on a random channels-last input of the shape it sees in ``net(x)``:
    the conv-bound floor that no rearrangement of the other ops can go below. In bf16 / fp16 the convs and their
    inputs are cast to that dtype (no per-call conversions, as in :func:`lipt_arch.optimize`'s forms)."""
    shapes: list[tuple[nn.Conv2d, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda m, a: shapes.append((m, a[0].shape)))
             for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    with torch.inference_mode():
        net(x)
    for hook in hooks:
        hook.remove()
    cast = DTYPES[dtype]
    inputs = [(copy.deepcopy(conv).to(cast), torch.rand(shape, device=x.device, dtype=cast).contiguous(
        memory_format=torch.channels_last)) for conv, shape in shapes]

    def run() -> None:
        with torch.inference_mode():
            for conv, inp in inputs:
                conv(inp)

    return run


def lipt_entries(x: torch.Tensor, scale: int, low: str | tuple[str, ...], compile_: bool,
                 calibration: Path | None = None) -> list[dict]:
    """The LIPT rows (ours, the authors' structure, the conv floor) for Small and Tiny, to be timed; ``low`` names
    the reduced precision(s) of the fused rows and the conv floor ('bf16', 'fp16'). The bf16 / fp16, compiled and
    int8 rows are :func:`lipt_arch.optimize` forms; int8 (CPU) is calibrated on LR crops of the images in
    ``calibration`` (left out when None)."""
    lows = (low,) if isinstance(low, str) else tuple(low)
    entries = []
    for preset in ('small', 'tiny'):
        model = LIPT(**preset_config(preset, scale)).to(x.device).eval()
        fused = reparameterize(model)
        label = f'LIPT-{preset.capitalize()}'
        entries.append(inference_entry(f'{label} fused (ours)', fused, x))
        entries += [inference_entry(f'{label} fused (ours)', optimize(fused, dtype, x.device), x, dtype=dtype,
                                    macs=False) for dtype in lows]
        if compile_:  # Inductor freezing: weights become constants, oneDNN prepacks them, conv+ReLU/add fuse
            entries += [inference_entry(f'{label} fused + torch.compile (ours)',
                                        optimize(fused, dtype, x.device, compile=True), x, dtype=dtype, macs=False)
                        for dtype in ('fp32', *lows)]
        if calibration is not None and x.device.type == 'cpu':
            entries.append(inference_entry(f'{label} fused, int8 convs (ours, ONNX Runtime)',
                                           optimize(fused, 'int8', x.device, calibration=calibration), x,
                                           dtype='int8', macs=False))
        entries.append(inference_entry(f"{label} converted (authors' structure)", ReferenceLIPT(model, True).eval(),
                                       x, macs=False))
        if preset == 'small':
            entries.append(inference_entry(f'{label} training form, eval (ours)', model, x, macs=False))
            entries.append(inference_entry(f"{label} training form, eval (authors' structure)",
                                           ReferenceLIPT(model, False).eval(), x, macs=False))
        for dtype in ('fp32', *lows):
            entries.append(dict(name=f'{label}: its 3x3 convs alone (conv-bound floor)', dtype=dtype, params=0,
                                macs=None, run=conv_floor(fused, x, dtype)))
    return entries


TRAIN_VARIANTS = {  # label: LIPTModel's train.amp / channels_last / compile options (None: the authors' structure)
    'ours': SpeedOptions(),
    'ours + compile_rep_convs': SpeedOptions(compile='rep_convs'),
    'ours, bf16 AMP': SpeedOptions('bf16'),
    'ours, bf16 AMP + channels_last': SpeedOptions('bf16', channels_last=True),
    'ours, bf16 AMP + compile_rep_convs': SpeedOptions('bf16', compile='rep_convs'),
    'ours, bf16 AMP + compile network': SpeedOptions('bf16', compile='network'),
    "authors' structure": None,
}
CUDA_TRAIN_VARIANTS = {  # added on a GPU
    'ours, fp16 AMP': SpeedOptions('fp16'),
    'ours, fp16 AMP + channels_last': SpeedOptions('fp16', channels_last=True),
}
AMP_TRAIN_GOALS = (3.0, 2.0)  # target: bf16 AMP step vs the authors' fp32 step, CPUs with AMX / AVX512-BF16 only


def low_precisions(choice: str, device: torch.device) -> tuple[str, ...]:
    """The reduced precisions to time: ``--low`` as given, or for ``auto`` fp16 and bf16 on CUDA, bf16 on a CPU that
    computes it (AVX512-BF16 or AMX) and none on one that only emulates it (10x slower than fp32 on AVX2)."""
    if choice != 'auto':
        return () if choice == 'none' else (choice,)
    if device.type == 'cuda':
        return ('fp16', 'bf16')
    isa = cpu_info()['isa']
    if 'AVX512-BF16' in isa or 'AMX' in isa:
        return ('bf16',)
    print(f'bf16 rows left out: this CPU ({", ".join(isa) or "no AVX"}) has no bf16 arithmetic (pass --low bf16 to '
          'time them anyway)', flush=True)
    return ()


def training_rows(device: torch.device, repeats: int, batch: int = 16, patch: int = 48,
                  lows: tuple[str, ...] = ('bf16',)) -> list[dict]:
    """Forward + L1 + backward + Adam step, x2, ``batch`` LR patches of ``patch`` pixels: ours (eager; six-branch
    convs compiled; bf16 AMP alone, with channels-last, with compiled convs or network; fp16 AMP on CUDA: the step
    LIPTModel runs for those train options) vs the authors' structure in fp32, same initial weights and data. The
    variants of a preset take turns, one step each per round (``repeats`` rounds after two warm-up steps each), so a
    slow spell of the machine hits them alike; each row is the median over the rounds."""
    variants = {**TRAIN_VARIANTS, **(CUDA_TRAIN_VARIANTS if device.type == 'cuda' else {})}
    variants = {k: v for k, v in variants.items() if v is None or v.amp is None or v.amp in lows}
    rows = []
    for preset in ('tiny', 'small'):
        steps = {label: _train_step(preset, speed, device, batch, patch) for label, speed in variants.items()}
        for label, times in round_times(steps, device, repeats, warmups=2).items():  # 1st step compiles
            seconds = statistics.median(times)
            print(f'train step LIPT-{preset} ({label}): {seconds:.3f} s', flush=True)
            rows.append(dict(name=f'LIPT-{preset.capitalize()} train step ({label})', seconds=seconds, rounds=times))
    return rows


def _train_step(preset: str, speed: SpeedOptions | None, device: torch.device, batch: int,
                patch: int) -> Callable[[], torch.Tensor]:
    torch.manual_seed(0)
    model = LIPT(**preset_config(preset, 2)).to(device)
    net = ReferenceLIPT(model, False) if speed is None else model
    speed = speed or SpeedOptions()
    net.train()
    forward = training_speed.prepare_training_network(net, net, speed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    scaler = training_speed.grad_scaler(speed, device)
    lq = torch.rand(batch, 3, patch, patch, device=device)
    gt = torch.rand(batch, 3, 2 * patch, 2 * patch, device=device)
    if speed.channels_last:
        lq, gt = training_speed.to_channels_last(lq), training_speed.to_channels_last(gt)

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with training_speed.autocast(speed, device):
            loss = nn.functional.l1_loss(forward(lq), gt)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    return step


def memory_rows(threads: int) -> list[dict]:
    """Peak RSS of ``lipt infer`` on one 960x540 image, x4 (3840x2160 output), 384-pixel tiles (infer_cli.py)."""
    from benchmarks.infer_cli import run_case

    with tempfile.TemporaryDirectory() as tmp:
        return [run_case(preset, 4, '960x540', 384, 1, threads, Path(tmp)) for preset in ('tiny', 'small')]


def markdown(rows: list[dict], train: list[dict], memory: list[dict], args: argparse.Namespace,
             baseline: dict[str, float]) -> str:
    h, w = args.height, args.width
    machine = getattr(args, 'machine', None)  # describe(): CPU, ISA, torch, threads, load before/after, busy warning
    lines = ([machine, ''] if machine else []) + [
             f'Device: {args.device_name}; threads: {torch.get_num_threads()}; torch {torch.__version__}; '
             f'x{args.scale}, input {h}x{w} -> {h * args.scale}x{w * args.scale}; {args.clock} time; the networks '
             f'take turns, median of {args.repeats} rounds after a warm-up; random weights.', '',
             "| network | dtype | params (M) | MACs (G) | time (s) | speed-up vs authors' converted (fp32) |",
             '|---|---|---|---|---|---|']
    for r in rows:
        ref = baseline.get(r['name'].split(' ')[0].rstrip(':'))
        speed = f"{ref / r['seconds']:.2f}x" if ref else ''
        macs = f"{r['macs'] / 1e9:.1f}" if r.get('macs') else ''
        params = f"{r['params'] / 1e6:.3f}" if r['params'] else ''
        lines.append(f"| {r['name']} | {r['dtype']} | {params} | {macs} | {r['seconds']:.3f} | {speed} |")
    if train:
        lines += ['', f'Training step (forward + L1 + backward + Adam), x2, batch 16, 48x48 LR patches, '
                  f'{args.device_name}, {args.clock} time, the variants taking turns, median of {args.repeats} rounds '
                  f'after two warm-up steps each:', '',
                  "| network | time (s) | speed-up vs authors' structure |", '|---|---|---|']
        ref = {r['name'].split(' ')[0]: r['seconds'] for r in train if "authors'" in r['name']}
        lines += [f"| {r['name']} | {r['seconds']:.3f} | {ref[r['name'].split(' ')[0]] / r['seconds']:.2f}x |"
                  for r in train]
    if memory:
        lines += ['', 'Peak RSS of tiled 4K-output inference: `lipt infer`, one 960x540 image, x4 -> 3840x2160, '
                  '384-pixel tiles, whole process (`/usr/bin/time -v`):', '',
                  '| network | peak RSS (MiB) | time (s) |', '|---|---|---|']
        lines += [f"| LIPT-{m['preset'].capitalize()} fused | {m['peak_rss_mib']:.0f} | {m['s_per_image']:.2f} |"
                  for m in memory]
    lines += ['', 'Targets (measured ratio / target):', '']
    lines += [f'- {text}: {value}' for text, value in goal_lines(rows, train)]
    return '\n'.join(lines) + '\n'


def goal_lines(rows: list[dict], train: list[dict] = ()) -> list[tuple[str, str]]:
    """The latency targets as measured ratios (a goal whose rows are missing is left out), and the most that
    the conv-bound floor allows. Each ratio is :func:`paired_ratio`'s median over the rounds; with more than one
    round its range follows in brackets, and the verdict is the median's."""
    t = {(r['name'], r['dtype']): r for r in rows}
    small, tiny = ('LIPT-Small fused (ours)', 'fp32'), ('LIPT-Tiny fused (ours)', 'fp32')
    tiny_compiled = ('LIPT-Tiny fused + torch.compile (ours)', 'fp32')
    converted = ("LIPT-Small converted (authors' structure)", 'fp32')
    floor = ('LIPT-Small: its 3x3 convs alone (conv-bound floor)', 'fp32')
    floor_bf16 = ('LIPT-Small: its 3x3 convs alone (conv-bound floor)', 'bf16')
    compiled = ('LIPT-Small fused + torch.compile (ours)', 'fp32')
    checks = [
        ("LIPT-Small fp32 vs authors' converted", converted, small, 1.6),
        ("LIPT-Small fp32 + torch.compile vs authors' converted", converted, compiled, 1.8),
        ("LIPT-Small fp32 3x3 convs alone vs authors' converted (upper bound)", converted, floor, 1.6),
        ('LIPT-Small fp32 vs SwinIR-light', ('SwinIR-light', 'fp32'), small, 5.0),
        ('LIPT-Small fp32 + torch.compile vs SwinIR-light', ('SwinIR-light', 'fp32'), compiled, 5.0),
        ('LIPT-Small fp32 3x3 convs alone vs SwinIR-light (upper bound)', ('SwinIR-light', 'fp32'), floor, 5.0),
        *[(f'LIPT-Tiny fp32 vs {peer} (>= 1 means no slower)', (peer, 'fp32'), tiny, 1.0) for peer in PEERS_COMPILED],
        *[(f'LIPT-Tiny fp32 + torch.compile vs {peer} + torch.compile', (f'{peer} + torch.compile', 'fp32'),
           tiny_compiled, 1.0) for peer in PEERS_COMPILED],
        *[(f'LIPT-Tiny fp32 3x3 convs alone vs {peer} + torch.compile (upper bound)', (f'{peer} + torch.compile',
           'fp32'), ('LIPT-Tiny: its 3x3 convs alone (conv-bound floor)', 'fp32'), 1.0) for peer in PEERS_COMPILED],
        ('LIPT-Small int8 vs ours bf16 (target: on AMX)', ('LIPT-Small fused (ours)', 'bf16'),
         ('LIPT-Small fused, int8 convs (ours, ONNX Runtime)', 'int8'), 1.5),
    ]
    isa = cpu_info()['isa']
    bf16_class = 'AMX' if 'AMX' in isa else 'AVX512-BF16'
    bf16_goal = BF16_GOALS[bf16_class]
    for suffix in ('', ' + torch.compile'):  # target: bf16 per processor class, and against its own conv floor
        ours = (f'LIPT-Small fused{suffix} (ours)', 'bf16')
        checks.append((f"LIPT-Small bf16{suffix} vs authors' converted fp32 (target of a CPU with "
                       f'{bf16_class})', converted, ours, bf16_goal))
        checks.append((f'LIPT-Small bf16 conv floor vs LIPT-Small bf16{suffix} (target: within 1.3x of the floor)',
                       floor_bf16, ours, 1 / 1.3))
        checks += [(f'LIPT-Tiny bf16{suffix} vs {peer} bf16{suffix} (>= 1 means no slower)', (f'{peer}{suffix}',
                    'bf16'), (f'LIPT-Tiny fused{suffix} (ours)', 'bf16'), 1.0) for peer in PEERS_COMPILED]
    checks.append(("LIPT-Small bf16 3x3 convs alone vs authors' converted fp32 (upper bound)", converted, floor_bf16,
                   bf16_goal))
    out = []
    for text, slow, fast, goal in checks:
        if slow in t and fast in t:
            ratio, low, high = paired_ratio(t[slow], t[fast])
            if 'upper bound' in text:
                verdict = 'reachable in principle' if ratio >= goal else 'out of reach on this machine'
            else:
                verdict = 'met' if ratio >= goal else 'not met'
            out.append((text, f'{_ratio_text(ratio, low, high)} / {goal:.1f}x ({verdict})'))
    steps = {r['name']: r for r in train}
    for preset in ('Tiny', 'Small'):
        ref = steps.get(f"LIPT-{preset} train step (authors' structure)")
        for variant, speed in {**TRAIN_VARIANTS, **CUDA_TRAIN_VARIANTS}.items():
            ours = steps.get(f'LIPT-{preset} train step ({variant})')
            if not (ref and ours and speed):
                continue
            ratio, low, high = paired_ratio(ref, ours)
            measured = _ratio_text(ratio, low, high)
            if speed.amp is None:
                out.append((f"LIPT-{preset} training step, {variant} vs authors' structure",
                            f"{measured} / 1.5x ({'met' if ratio >= 1.5 else 'not met'})"))
            else:
                amx, avx512 = AMP_TRAIN_GOALS
                out.append((f"LIPT-{preset} training step, {variant} vs authors' structure fp32",
                            f'{measured} / {amx:.1f}x on AMX CPUs, {avx512:.1f}x on AVX512-BF16 CPUs '
                            f"({'met' if ratio >= amx else 'AVX512-BF16 goal met' if ratio >= avx512 else 'not met'})"))
    return out


def _ratio_text(ratio: float, low: float, high: float) -> str:
    return f'{ratio:.2f}x' + (f' [rounds {low:.2f}-{high:.2f}x]' if high > low else '')


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    points = {}
    for r in rows:
        if r['dtype'] != 'fp32':
            continue
        for net in PAPER_URBAN100_X4:
            if r['name'] in (f'{net} fused (ours)', net):
                points[net] = (r['seconds'], PAPER_URBAN100_X4[net])
    fig, ax = plt.subplots(figsize=(6, 4))
    for net, (sec, psnr) in points.items():
        ax.scatter(sec, psnr, s=60, color='tab:red' if net.startswith('LIPT') else 'tab:blue')
        ax.annotate(net, (sec, psnr), textcoords='offset points', xytext=(6, 4))
    ax.set_xscale('log')
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel('latency (s, log scale, measured here)')
    ax.set_ylabel('Urban100 x4 PSNR (dB, from the paper)')
    ax.set_title('LIPT: PSNR vs latency')
    ax.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f'wrote {path}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--height', type=int, default=184)
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--clock', default='wall', choices=sorted(CLOCK), help='wall time, or process CPU time')
    parser.add_argument('--low', default='auto', choices=['auto', 'bf16', 'fp16', 'none'],
                        help='reduced precision rows (inference and AMP training); auto: fp16 and bf16 on CUDA, bf16 '
                             'on CPUs with AVX512-BF16 or AMX, none on CPUs that only emulate bf16')
    parser.add_argument('--no-peers', action='store_true')
    parser.add_argument('--compile', action='store_true',
                        help=f"also time torch.compile of the fused models and of {', '.join(PEERS_COMPILED)}")
    parser.add_argument('--train', action='store_true', help='also time the training step')
    parser.add_argument('--calibration', type=Path, default=shared_root() / 'datasets' / 'train' / 'T91',
                        help='training images calibrating the int8 rows (default: T91 under $LIPT_SHARED or ../shared)')
    parser.add_argument('--no-int8', action='store_true', help='leave out the int8 rows (CPU only)')
    parser.add_argument('--no-memory', action='store_true', help='leave out the peak RSS of tiled 4K inference')
    parser.add_argument('--markdown', type=Path, help='write the table here')
    parser.add_argument('--plot', type=Path, help='write the PSNR-vs-latency PNG here')
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: no CUDA device available')
    device = torch.device(args.device)
    args.device_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    load_before = load_average()
    x = torch.rand(1, 3, args.height, args.width, device=device)
    low = low_precisions(args.low, device)
    calibration = None if args.no_int8 else args.calibration
    if calibration is not None and not calibration.is_dir():
        print(f'{calibration}: no such folder: int8 rows left out (pass --calibration)', file=sys.stderr)
        calibration = None
    entries = lipt_entries(x, args.scale, low, args.compile, calibration)
    for name, build in ({} if args.no_peers else peers(args.scale)).items():
        net = build().to(device).eval()
        entries.append(inference_entry(name, net, x))
        if name in PEERS_COMPILED:  # LIPT-Tiny's peers: also in the reduced precisions, and compiled
            entries += [inference_entry(name, InPrecision(net, dtype), x, dtype=dtype, macs=False) for dtype in low]
            if args.compile:
                entries += [inference_entry(f'{name} + torch.compile', Compiled(InPrecision(
                    net, dtype, channels_last=False) if dtype != 'fp32' else net), x, dtype=dtype, macs=False)
                    for dtype in ('fp32', *low)]
    rows = time_rows(entries, device, args.repeats)
    baseline = {r['name'].split(' ')[0]: r['seconds'] for r in rows if "converted (authors'" in r['name']}
    train = training_rows(device, args.repeats, lows=low) if args.train else []
    memory = memory_rows(args.threads) if device.type == 'cpu' and not args.no_memory else []
    args.machine = describe(load_before, load_average(), args.device,
                            own_threads=args.threads if device.type == 'cpu' else 1)
    table = markdown(rows, train, memory, args, baseline)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.plot:
        plot(rows, args.plot)


if __name__ == '__main__':
    main()
