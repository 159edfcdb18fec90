"""What a benchmark ran on: CPU model, cores, instruction sets, torch, threads, GPU, and how busy the machine was.

    from benchmarks.machine import describe, load_warning
    before = os.getloadavg(); ...; print(describe(before, os.getloadavg()))

Busy rule: a run is flagged when the 1-minute load average, before or after, exceeds half the logical CPU count
(``BUSY_LOAD_PER_CPU``). A benchmark on 1-2 threads then competes with other work for cores, memory bandwidth and
cache, and its times are not comparable with an idle run's.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

BUSY_LOAD_PER_CPU = 0.5  # 1-minute load average per logical CPU above which a run counts as taken on a busy machine
# /proc/cpuinfo flags -> the instruction-set names a reader compares processors by, fastest last.
ISA_FLAGS = (('AVX2', 'avx2'), ('AVX-512', 'avx512f'), ('AVX512-BF16', 'avx512_bf16'), ('AVX512-FP16', 'avx512_fp16'),
             ('AMX', 'amx_tile'))


def cpu_info(cpuinfo: str | None = None) -> dict[str, object]:
    """CPU model name, logical CPU count and instruction sets (names from :data:`ISA_FLAGS`).

    ``cpuinfo`` is the text of /proc/cpuinfo (read from the machine when None; empty where there is none, e.g. macOS,
    and then the model comes from :func:`platform.processor`).
    """
    if cpuinfo is None:
        path = Path('/proc/cpuinfo')
        cpuinfo = path.read_text() if path.is_file() else ''
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get('flags', '').split())
    model = fields.get('model name') or platform.processor() or platform.machine() or 'unknown CPU'
    return dict(model=model, cpus=os.cpu_count() or 1, isa=[name for name, flag in ISA_FLAGS if flag in flags])


def load_warning(before: tuple[float, ...], after: tuple[float, ...], cpus: int | None = None,
                 own_threads: int = 0) -> str | None:
    """A warning line when the 1-minute load average (``os.getloadavg()[0]``) before the run exceeds
    ``BUSY_LOAD_PER_CPU`` x ``cpus``, or after it exceeds that plus ``own_threads`` (the load the benchmark itself
    adds while it runs); None on a quiet machine."""
    cpus = cpus or os.cpu_count() or 1
    limit = BUSY_LOAD_PER_CPU * cpus
    if before[0] <= limit and after[0] <= limit + own_threads:
        return None
    own = f' (+{own_threads} for its own threads after)' if own_threads else ''
    return (f'WARNING: busy machine: 1-minute load average {before[0]:.2f} before, {after[0]:.2f} after, above '
            f'{limit:.2f}{own} ({BUSY_LOAD_PER_CPU} per logical CPU, {cpus} CPUs): these times are not comparable '
            f'with an idle run; measure again with nothing else running')


def load_average() -> tuple[float, float, float]:
    """``os.getloadavg()``, or zeros where the platform has none (Windows)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def describe(before: tuple[float, ...], after: tuple[float, ...] | None = None, device: str = 'cpu',
             cpuinfo: str | None = None, own_threads: int = 0) -> str:
    """A markdown paragraph naming the machine: CPU model, logical CPUs, ISA (from /proc/cpuinfo flags) and torch's
    CPU capability, torch version, threads, the GPU when ``device`` is 'cuda', and the load averages (1, 5, 15 min)
    before and after; a warning line follows when :func:`load_warning` says the machine was busy."""
    info = cpu_info(cpuinfo)
    isa = ', '.join(info['isa']) or 'no AVX2'
    lines = [f"CPU: {info['model']}, {info['cpus']} logical CPUs, ISA {isa} (torch CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()}); torch {torch.__version__}; threads "
             f"{torch.get_num_threads()}."]
    if device == 'cuda' and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f'GPU: {props.name}, {props.total_memory / 2 ** 30:.0f} GiB, CUDA {torch.version.cuda}, '
                     f'cuDNN {torch.backends.cudnn.version()}.')
    load = f"Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in before[:3])} before"
    if after is not None:
        load += f"; {', '.join(f'{v:.2f}' for v in after[:3])} after"
    lines.append(load + '.')
    warning = load_warning(before, after if after is not None else before, info['cpus'], own_threads)
    if warning:
        lines.append(warning)
    return '\n'.join(lines)
