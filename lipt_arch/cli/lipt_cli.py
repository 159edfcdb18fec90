"""The ``lipt`` command: ``infer`` (images and folders), ``convert`` (to a fused checkpoint), ``export`` (ONNX),
``info`` and ``models`` (the pretrained models shipped in the package). Every expected failure is one
``lipt: error: ...`` line on stderr and exit status 1 (2 for bad usage)."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from lipt_arch import zoo
from lipt_arch.archs.lipt_arch import SCALES, WINDOW_SIZES
from lipt_arch.checkpoints import (
    KINDS,
    LoadedModel,
    check_distinct,
    checkpoint_format,
    count_parameters,
    load_any,
    matching_preset,
    save_model,
)
from lipt_arch.deploy.export import check_onnx, export_onnx
from lipt_arch.deploy.inference import resolve_device, upscale_array
from lipt_arch.deploy.optimized import calibration_inputs, optimize
from lipt_arch.errors import CheckpointError, ImageError, OptionError
from lipt_arch.image_io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    check_extension,
    check_not_input,
    check_output_memory,
    fit_to_format,
    is_image_path,
    read_image,
    write_image,
)
from lipt_arch.validation import check_lipt_args

EXIT_FAILURE = 1
DEBUG_ENV = 'LIPT_DEBUG'  # set to 1 to see tracebacks instead of one-line errors


class CliError(Exception):
    """A user-facing failure: printed as one line, no traceback."""


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--scale', type=int, choices=SCALES, default=None,
                        help='expected scale; checked against the checkpoint (inferred when omitted)')
    parser.add_argument('--window-size', type=int, choices=WINDOW_SIZES, default=None,
                        help='attention window for checkpoints that do not record it (default: the matching '
                             "preset's, else 8)")


def _calibration_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--calibration', default=None,
                        help='int8: folder of training images (HR) whose bicubic LR crops calibrate the activation '
                             'scales; never a test set')


def _pixel_count(text: str) -> int:
    """``--max-pixels``: an integer >= 0 (``_`` separators allowed, e.g. 250_000_000)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be an integer >= 0 (0 = no limit), got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='lipt', description='LIPT super-resolution: run, convert, export, inspect.')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('infer', help='upscale an image or every image in a folder')
    p.add_argument('-i', '--input', required=True, help='image file or folder (png, jpg, bmp, tif, webp)')
    p.add_argument('-o', '--output', required=True, help='output image file, or folder (same file names)')
    p.add_argument('--model', default=None,
                   help="checkpoint (fused .pth / .safetensors, BasicSR training, or the authors' code) or a shipped "
                        'model name (lipt models); default: the shipped lipt-tiny-x<scale>, x4 without --scale')
    p.add_argument('--tile', type=int, default=384, help='tile side in input pixels; 0 = whole image (default 384)')
    p.add_argument('--tile-pad', type=int, default=32, help='context around each tile in input pixels (default 32)')
    p.add_argument('--dtype', choices=('fp32', 'fp16', 'bf16', 'int8'), default='fp32',
                   help='precision (default fp32); int8 runs on the CPU in ONNX Runtime and needs --calibration')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N (GPU N) (default auto)')
    p.add_argument('--compile', action='store_true',
                   help='torch.compile the network (fp32 / bf16 / fp16; the first tile of each size compiles)')
    _calibration_option(p)
    p.add_argument('--max-pixels', type=_pixel_count, default=DEFAULT_MAX_PIXELS, metavar='N',
                   help=f'refuse input images of more than N pixels (width x height), read from the file header '
                        f'before decoding, and outputs that would not fit in the available memory (default '
                        f'{DEFAULT_MAX_PIXELS:_} = {DEFAULT_MAX_PIXELS // 10**6} megapixels; 0 = no limits)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bars and no model line')
    _model_options(p)

    p = sub.add_parser('convert', help='training checkpoint (ours or the authors\') -> fused checkpoint with config')
    p.add_argument('input')
    p.add_argument('output')
    p.add_argument('--format', choices=('pth', 'safetensors'), default=None,
                   help='default: safetensors if OUTPUT ends in .safetensors, else pth')
    _model_options(p)

    p = sub.add_parser('export', help='ONNX with dynamic batch, height and width')
    p.add_argument('--onnx', required=True, help='output .onnx file')
    p.add_argument('--model', required=True, help='checkpoint (any kind lipt infer reads) or a shipped model name')
    p.add_argument('--opset', type=int, default=18)
    p.add_argument('--no-check', action='store_true', help='skip the onnxruntime comparison after export')
    p.add_argument('--dtype', choices=('fp32', 'bf16', 'fp16', 'int8'), default='fp32',
                   help='fp32 (default) or int8 (QDQ: int8 convs, needs --calibration); bf16 / fp16 are refused')
    _calibration_option(p)
    _model_options(p)

    p = sub.add_parser('info', help='describe a checkpoint')
    p.add_argument('model')
    _model_options(p)

    sub.add_parser('models', help='list the pretrained models shipped in the package, with their scores')

    p = sub.add_parser('options', help='list the bundled BasicSR option files, or print the path of one',
                       description='Bundled option files run from any directory: basicsr train -opt NAME (or copy '
                                   'the file printed by lipt options NAME and edit it).')
    p.add_argument('name', nargs='?', help='print the file `basicsr train -opt NAME` uses: NAME itself when it is a '
                                           'file here, else the bundled option of that name (e.g. demo)')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lipt`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_lipt_args(args)
    except OptionError as err:
        parser.error(str(err))  # bad usage: one line, exit status 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warn_line
            return COMMANDS[args.command](args)
    except (CliError, CheckpointError, ImageError, ValueError, OSError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        _error(str(err))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _error('interrupted')
        return 130
    except Exception as err:  # noqa: BLE001  (an unexpected failure is still one line; LIPT_DEBUG=1 shows more)
        if os.environ.get(DEBUG_ENV):
            raise
        _error(f'{type(err).__name__}: {err} (set {DEBUG_ENV}=1 for a traceback)')
        return EXIT_FAILURE


def _error(message: str) -> None:
    print(f'lipt: error: {" ".join(message.split())}', file=sys.stderr)


def _note(message: str) -> None:
    print(f'lipt: {message}', file=sys.stderr)


def _warn_line(message: Warning | str, *_args: object, **_kwargs: object) -> None:
    _note(f'warning: {message}')


def _load(args: argparse.Namespace) -> LoadedModel:
    args.model = _model_path(args.model, args.scale)
    loaded = load_any(args.model, args.scale, args.window_size)
    if loaded.assumed:
        how = ['--window-size sets the window'] if 'window_size' in loaded.assumed_options else []
        if 'img_residual' in loaded.assumed_options:
            how.append("img_residual is read from the BasicSR experiment's option file when the checkpoint is still "
                       'in its experiments/<name>/models/ folder')
        _note(f"warning: {', '.join(loaded.assumed)} assumed ({KINDS[loaded.kind]} does not record it; "
              f"{'; '.join(how)})")
    return loaded


def _model_path(spec: str | None, scale: int | None) -> str:
    """A checkpoint path for ``--model``: the file itself when it exists, else a shipped model's weights (by name,
    or ``lipt-tiny-x<scale>`` when ``spec`` is None), checked against its card's SHA-256."""
    if spec is not None and (Path(spec).exists() or Path(spec).suffix):
        return spec
    try:
        name = zoo.resolve_name(zoo.DEFAULT_PRESET if spec is None else spec, scale)
    except ValueError as err:
        if spec is None:
            raise
        raise CliError(f'{spec}: no such checkpoint file, and not a shipped model name ({err})') from None
    return str(zoo.checked_weights(name))


def _describe(config: dict) -> str:
    preset = matching_preset(config)
    name = f'LIPT-{preset}' if preset else f"LIPT (width {config['num_feat']}, {config['num_block']} blocks)"
    gray = ', gray' if config.get('num_in_ch', 3) == 1 else ''
    return f"{name} x{config['upscale']}{gray}"


# ---------------------------------------------------------------------------------------------------------- infer
def _infer(args: argparse.Namespace) -> int:
    source = Path(args.input)
    if not source.exists():
        raise CliError(f'{source}: no such file or folder')
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file())
        images = [p for p in files if is_image_path(p)]
        if not images:
            raise CliError(f'{source}: no images in this folder (looked for {", ".join(IMAGE_EXTENSIONS)})')
        if len(images) < len(files):
            _note(f'skipping {len(files) - len(images)} file(s) in {source} without an image extension')
        if Path(args.output).resolve() == source.resolve():
            raise CliError(f'{args.output}: output folder is the input folder (images would be overwritten)')
        out_dir = _output_folder(Path(args.output))
        jobs = [(p, out_dir / p.name) for p in images]
        for src, dst in jobs:
            check_not_input(dst, [src])  # e.g. a hard link to the input: refused before anything is written
    else:
        check_extension(source)
        target = Path(args.output)
        if target.is_dir() or (not target.suffix and not target.exists()):
            target = _output_folder(target) / source.name
        else:
            check_extension(target)
            target.parent.mkdir(parents=True, exist_ok=True)
        check_not_input(target, [source])
        jobs = [(source, target)]

    device = _device(args.device)
    _check_calibration(args)
    loaded = _load(args)
    with _quiet_calibration(args.quiet and args.dtype == 'int8'):
        model = optimize(loaded.model, args.dtype, device, compile=args.compile, calibration=args.calibration)
    if not args.quiet:
        _note(f'{_describe(loaded.config)} from {args.model} on {device} in {model.precision}'
              f'{" (compiled)" if args.compile else ""}')
    failures, start, cpu_start = [], time.perf_counter(), time.process_time()
    for src, dst in tqdm(jobs, desc='images', unit='img', disable=args.quiet or len(jobs) == 1):
        try:
            _infer_one(model, src, dst, args, model.device)
        except Exception as err:  # noqa: BLE001  (one bad image must not stop a folder run)
            if os.environ.get(DEBUG_ENV):
                raise
            failures.append(_one_line(err, src))
    done = len(jobs) - len(failures)
    if len(jobs) == 1 and failures:
        raise CliError(failures[0])
    if done:
        _note(f'wrote {done} image(s) to {jobs[0][1].parent if len(jobs) > 1 else jobs[0][1]} '
              f'in {time.perf_counter() - start:.1f} s ({time.process_time() - cpu_start:.1f} CPU s)')
    if failures:
        _error(f'{len(failures)} of {len(jobs)} images failed:')
        for line in failures:
            print(f'  {line}', file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _check_calibration(args: argparse.Namespace) -> None:
    if args.dtype == 'int8' and not args.calibration:
        raise CliError('--dtype int8 needs --calibration FOLDER (training images to calibrate the activation scales; '
                       'never a test set)')
    if args.calibration and args.dtype != 'int8':
        raise CliError(f'--calibration is for --dtype int8 only (dtype is {args.dtype})')
    if args.calibration and not Path(args.calibration).is_dir():
        raise CliError(f'{args.calibration}: no such folder (--calibration)')


DEVICE_CHOICES = 'auto, cpu, cuda, cuda:N (N: the GPU index)'


def _device(name: str) -> torch.device:
    """``--device``: one of :data:`DEVICE_CHOICES`, checked before any model is loaded (one line otherwise)."""
    if not re.fullmatch(r'auto|cpu|cuda(:\d+)?', name.strip().lower()):
        raise CliError(f'--device: {name!r} is not a device lipt runs on; choose one of {DEVICE_CHOICES}')
    device = resolve_device(name.strip().lower())  # ValueError (one line) when CUDA is missing
    if device.type == 'cuda' and device.index is not None and device.index >= torch.cuda.device_count():
        raise CliError(f'--device: {name}: no such GPU; this machine has {torch.cuda.device_count()} CUDA device(s)')
    return device


def _quiet_calibration(quiet: bool) -> contextlib.AbstractContextManager:
    """With ``-q``: ONNX Runtime's int8 calibration prints nothing (its progress lines go to stdout; its C++ log is
    cut to errors)."""
    if not quiet:
        return contextlib.nullcontext()
    with contextlib.suppress(ImportError):
        import onnxruntime
        onnxruntime.set_default_logger_severity(3)
    return contextlib.redirect_stdout(io.StringIO())


def _output_folder(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise CliError(f'{path}: exists as a file, but a folder is needed for the output')
    path.mkdir(parents=True, exist_ok=True)
    return path


def _one_line(err: Exception, src: Path) -> str:
    text = ' '.join(str(err).split()) or type(err).__name__
    if isinstance(err, ImageError):
        return text  # already names the file
    return f'{src}: {type(err).__name__}: {text}'


def _infer_one(model: torch.nn.Module, src: Path, dst: Path, args: argparse.Namespace, device: torch.device) -> None:
    img = read_image(src, args.max_pixels or None)
    if args.max_pixels:
        check_output_memory(src, img.shape, img.dtype.itemsize, int(model.upscale))
    out = upscale_array(model, img, args.tile, args.tile_pad, progress=not args.quiet, device=device,
                        dtype=torch.float32)  # the optimized model takes float32 tiles and casts them itself
    out, notes = fit_to_format(out, dst.suffix.lower())
    for note in notes:
        _note(f'warning: {dst}: {note}')
    write_image(dst, out, inputs=[src])


# ------------------------------------------------------------------------------------------- convert, export, info
def _convert(args: argparse.Namespace) -> int:
    output = Path(args.output)
    fmt = checkpoint_format(output, args.format)
    args.model = _model_path(args.input, args.scale)
    check_distinct(output, args.model)  # before reading: the source is never written over (hard links included)
    loaded = _load(args)
    save_model(loaded.model, output, fuse=False, format=fmt, inputs=[args.model])
    _note(f'wrote fused {_describe(loaded.config)} ({fmt}, {count_parameters(loaded.model):,} parameters) to {output}')
    return 0


def _export(args: argparse.Namespace) -> int:
    if args.dtype in ('bf16', 'fp16'):
        raise CliError(f'--dtype {args.dtype}: lipt export writes fp32 or int8 ONNX only (ONNX Conv has no bf16 at '
                       f'opset 18); run {args.dtype} in PyTorch: lipt infer --dtype {args.dtype}')
    _check_calibration(args)
    loaded = _load(args)
    check_not_input(args.onnx, [args.model])
    if args.dtype == 'int8':
        return _export_int8(args, loaded)
    export_onnx(loaded.model, args.onnx, opset=args.opset)
    _note(f'wrote {_describe(loaded.config)} to {args.onnx} (input "image" (B, {loaded.config["num_in_ch"]}, H, W) '
          'in [0, 1], any H and W)')
    if not args.no_check:
        error = check_onnx(loaded.model, args.onnx)
        if error is None:
            _note('onnxruntime not installed: parity check skipped')
        else:
            _note(f'onnxruntime parity on two sizes: max abs error {error:.2e}')
    return 0


def _export_int8(args: argparse.Namespace, loaded: LoadedModel) -> int:
    from lipt_arch.deploy.export import onnx_psnr
    if args.opset != 18:
        raise CliError('--opset: the int8 export is written at opset 18 (ONNX Runtime\'s quantizer), leave it out')
    model = optimize(loaded.model, 'int8', 'cpu', calibration=args.calibration)
    model.save_onnx(args.onnx)
    _note(f'wrote int8 {_describe(loaded.config)} to {args.onnx} (QDQ: int8 convs, fp32 attention; input "image" '
          f'(B, {loaded.config["num_in_ch"]}, H, W) in [0, 1], any H and W)')
    if not args.no_check:
        crops = calibration_inputs(args.calibration, loaded.config, count=2, size=40, seed=1)
        psnr = onnx_psnr(loaded.model, args.onnx, [crops[0][..., :19, :27], crops[1][..., :, :33]])
        _note(f'onnxruntime int8 vs PyTorch fp32 on two training-image crops (19x27, 40x33): lowest PSNR '
              f'{psnr:.1f} dB')
    return 0


def _info(args: argparse.Namespace) -> int:
    loaded = _load(args)
    config = loaded.config
    preset = matching_preset(config)
    window_note = ' (assumed: not recorded in the file)' if 'window_size' in loaded.assumed_options else ''
    fused = 'yes' if loaded.stored_fused else 'no (training form; fused on load)'
    rows = [
        ('file', args.model), ('kind', KINDS[loaded.kind]),
        ('preset', f"{preset} (x{config['upscale']})" if preset else 'none (custom)'),
        ('scale', f"x{config['upscale']}"), ('width', config['num_feat']),
        ('depth', f"{config['num_block']} blocks x {1 + config['shared_depth']} layers "
                  f"(shared_depth {config['shared_depth']})"),
        ('window', f"{config['window_size']}{window_note}"),
        ('parameters', f'{loaded.stored_parameters:,} as stored' + (
            '' if loaded.stored_fused else f', {count_parameters(loaded.model):,} fused')),
        ('fused', fused),
    ]
    for key, value in rows:
        print(f'{key + ":":<12}{value}')
    return 0


def _models(args: argparse.Namespace) -> int:
    cards = zoo.model_cards()
    if not cards:
        raise CliError('no pretrained models in this install (lipt_arch/zoo/models.json missing)')
    print(f'{"name":<19}{"task":<9}{"scale":<7}{"params":>9}  {"test":<17}{"PSNR (bicubic or input, paper)":<32}'
          'trained on')
    for name, card in cards.items():
        test, score, baseline, paper = zoo.headline(card)
        paper_psnr = f"{paper['psnr']:.2f}" if paper else '-'
        text = f"{score['psnr']:.2f} dB ({baseline['psnr']:.2f}, {paper_psnr})"
        print(f"{name:<19}{card['task']:<9}{'x' + str(card['scale']):<7}{card['fused_parameters']:>9,}  {test:<17}"
              f"{text:<32}{card['training']['data'].split(' (')[0]}, {card['training']['iterations']} it")
    print('Scores and training details: docs/models.md; load one with lipt_arch.zoo.load_pretrained(name).')
    return 0


def _options(args: argparse.Namespace) -> int:
    from lipt_arch.basicsr_support.bundled_options import ALIASES, bundled_options, options_dir, resolve_option

    if args.name is not None:
        print(resolve_option(args.name))
        return 0
    print(f'bundled options in {options_dir()} (run one with: basicsr train -opt NAME):')
    for alias, target in ALIASES.items():
        print(f'  {alias}  (= {target})')
    for name in bundled_options():
        print(f'  {name}')
    return 0


COMMANDS = {'infer': _infer, 'convert': _convert, 'export': _export, 'info': _info, 'models': _models,
            'options': _options}

if __name__ == '__main__':
    sys.exit(main())
