"""Image files in and out through OpenCV, with one-line errors (:class:`ImageError`) for files that are not images.

Arrays are as OpenCV gives them: (H, W) grey or (H, W, C) BGR / BGRA, uint8 or uint16 (float32 TIFF too).
Paths may be non-ASCII (the bytes go through ``cv2.imdecode`` / ``cv2.imencode``).

Reading (:func:`read_image`) looks at the header first (:func:`image_header`, a few hundred bytes): a file is
decoded only when it is a single image of at most ``max_pixels`` pixels (:data:`DEFAULT_MAX_PIXELS`); float
samples must lie in [0, 1]. Writing (:func:`atomic_write`, :func:`write_bytes`, :func:`write_image`) goes to a
temporary file beside the target, renamed over it when complete: a failed write leaves no partial file and keeps the
old one; an output that is the same file as an input is refused first. :func:`atomic_write` and
:func:`check_not_input` are the package's one atomic writer and same-file check: ONNX files and checkpoints
(:mod:`lipt_arch.checkpoints`) are written through them too.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import cv2
import numpy as np

from lipt_arch.errors import ImageError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')  # the one list
DEEP_EXTENSIONS = ('.png', '.tif', '.tiff')  # can hold 16 bits per channel
ALPHA_EXTENSIONS = ('.png', '.tif', '.tiff', '.webp')
END_MARKERS = {'.png': b'IEND', '.jpg': b'\xff\xd9', '.jpeg': b'\xff\xd9'}
END_MARKER_SEARCH = 65536  # bytes from the end searched for the marker: writers may append data after it
DEFAULT_MAX_PIXELS = 100_000_000  # input images larger than this (width x height) are refused from their header
FLOAT_SLACK = 1 / 255  # float samples may stray this far outside [0, 1] (rounding after resampling)
FORMATS = 'PNG, JPEG, BMP, TIFF, WebP or PNM'  # what the header reader knows: the content of IMAGE_EXTENSIONS
FORMAT_EXTENSIONS = {'PNG': '.png', 'JPEG': '.jpg', 'BMP': '.bmp', 'TIFF': '.tif', 'WebP': '.webp', 'PNM': '.ppm'}
MAX_TIFF_PAGES = 10_000  # pages counted at most (a longer chain is reported as this many)
PathLike = str | os.PathLike


def is_image_path(path: PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def check_extension(path: PathLike) -> str:
    """The lower-case extension of ``path``; :class:`ImageError` when it is not an image extension we handle."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        shown = repr(ext) if ext else 'none'
        known = ', '.join(IMAGE_EXTENSIONS)
        raise ImageError(f'{os.fspath(path)}: unknown image extension {shown} (use one of {known})')
    return ext


def lacks_end_marker(tail: bytes, ext: str) -> bool:
    """Whether a PNG / JPEG whose last bytes are ``tail`` misses its end marker (cut short, e.g. by an interrupted
    copy); False for other formats. JPEG byte stuffing keeps FFD9 unique."""
    marker = END_MARKERS.get(ext.lower())
    return marker is not None and marker not in tail


def file_is_truncated(path: PathLike) -> bool:
    """:func:`lacks_end_marker` for the file at ``path`` (reads its first and last bytes; the format is taken from
    the content, else from the extension)."""
    with open(path, 'rb') as f:
        fmt = sniff_format(f.read(16))
        f.seek(max(os.fstat(f.fileno()).st_size - END_MARKER_SEARCH, 0))
        ext = FORMAT_EXTENSIONS[fmt] if fmt else os.path.splitext(os.fspath(path))[1]
        return lacks_end_marker(f.read(), ext)


# ------------------------------------------------------------------------------------------------------ headers
@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: ``format`` (a key of :data:`FORMAT_EXTENSIONS`), the size of the image
    OpenCV decodes, and ``frames``: pages of a TIFF (reduced-resolution pages not counted), frames of an animated PNG
    or WebP, else 1."""

    format: str
    width: int
    height: int
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height


class _HeaderError(Exception):
    """A header that ends early or holds impossible values."""


def sniff_format(head: bytes) -> str | None:
    """The format of a file starting with ``head`` (16 bytes are enough), None when it is none of :data:`FORMATS`."""
    if head.startswith(b'\x89PNG\r\n\x1a\n'):
        return 'PNG'
    if head.startswith(b'\xff\xd8\xff'):
        return 'JPEG'
    if head.startswith(b'BM'):
        return 'BMP'
    if head[:4] in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'):
        return 'TIFF'
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'WebP'
    if len(head) >= 3 and head[:1] == b'P' and head[1:2] in (b'1', b'2', b'3', b'4', b'5', b'6', b'7') \
            and head[2:3].isspace():
        return 'PNM'
    return None


def _read(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) < size:
        raise _HeaderError('it ends early')
    return data


def _png(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(8)
    length, kind = struct.unpack('>I4s', _read(f, 8))
    if kind != b'IHDR' or length < 8:
        raise _HeaderError('the first chunk is not IHDR')
    width, height = struct.unpack('>II', _read(f, 8))
    f.seek(length - 8 + 4, os.SEEK_CUR)  # rest of IHDR, CRC
    while len(head := f.read(8)) == 8:  # acTL (animation control) must come before the first IDAT
        length, kind = struct.unpack('>I4s', head)
        if kind == b'acTL':
            return width, height, struct.unpack('>I', _read(f, 4))[0]
        if kind in (b'IDAT', b'IEND'):
            break
        f.seek(length + 4, os.SEEK_CUR)
    return width, height, 1


_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)


def _jpeg(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            raise _HeaderError('no frame header (SOF) before the end')
        if byte != b'\xff':
            continue  # stray bytes between segments: skipped, as libjpeg does
        marker = f.read(1)
        while marker == b'\xff':  # fill bytes
            marker = f.read(1)
        if not marker:
            raise _HeaderError('no frame header (SOF) before the end')
        m = marker[0]
        if m in (0x00, 0x01) or 0xD0 <= m <= 0xD8:  # no length field
            continue
        if m in (0xD9, 0xDA):
            raise _HeaderError('no frame header (SOF) before the image data')
        length = struct.unpack('>H', _read(f, 2))[0]
        if m in _JPEG_FRAME_MARKERS:
            _precision, height, width = struct.unpack('>BHH', _read(f, 5))
            return width, height, 1
        if length < 2:
            raise _HeaderError(f'segment FF{m:02X} of length {length}')
        f.seek(length - 2, os.SEEK_CUR)


def _bmp(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(14)
    dib = struct.unpack('<I', _read(f, 4))[0]
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack('<HH', _read(f, 4))
    elif dib >= 16:
        width, height = struct.unpack('<ii', _read(f, 8))
    else:
        raise _HeaderError(f'DIB header of {dib} bytes')
    return width, abs(height), 1  # a negative height: rows stored top-down


def _tiff(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(0)
    head = _read(f, 8)
    order = '<' if head[:2] == b'II' else '>'
    if struct.unpack(order + 'H', head[2:4])[0] == 43:  # BigTIFF
        offset = struct.unpack(order + 'Q', _read(f, 8))[0]
        count_format, entry_size, value_at, next_format = 'Q', 20, 12, 'Q'
    else:
        offset = struct.unpack(order + 'I', head[4:8])[0]
        count_format, entry_size, value_at, next_format = 'H', 12, 8, 'I'
    value_formats = {3: 'H', 4: 'I', 16: 'Q'}  # SHORT, LONG, LONG8
    size, pages, seen = None, 0, set()
    while offset and pages < MAX_TIFF_PAGES:
        if offset in seen:
            raise _HeaderError('its pages form a loop')
        seen.add(offset)
        f.seek(offset)
        count = struct.unpack(order + count_format, _read(f, struct.calcsize(count_format)))[0]
        if not 0 < count <= 4096:
            raise _HeaderError(f'a page with {count} tags')
        entries = _read(f, count * entry_size)
        tags = {}
        for i in range(count):
            entry = entries[i * entry_size:(i + 1) * entry_size]
            tag, kind = struct.unpack(order + 'HH', entry[:4])
            if tag in (254, 255, 256, 257) and kind in value_formats:  # NewSubfileType, SubfileType, width, height
                fmt = order + value_formats[kind]
                tags[tag] = struct.unpack(fmt, entry[value_at:value_at + struct.calcsize(fmt)])[0]
        nxt = f.read(struct.calcsize(next_format))
        offset = struct.unpack(order + next_format, nxt)[0] if len(nxt) == struct.calcsize(next_format) else 0
        if size is None:
            if 256 not in tags or 257 not in tags:
                raise _HeaderError('the first page has no width or height')
            size = tags[256], tags[257]
            pages = 1
        elif not (tags.get(254, 0) & 1 or tags.get(255) == 2):  # reduced-resolution copies are not pages
            pages += 1
    if size is None:
        raise _HeaderError('no pages')
    return size[0], size[1], pages


def _webp(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(12)
    kind, length = struct.unpack('<4sI', _read(f, 8))
    data = f.read(min(length, 30))
    if kind == b'VP8 ' and len(data) >= 10 and data[3:6] == b'\x9d\x01\x2a':
        width, height = struct.unpack('<HH', data[6:10])
        return width & 0x3FFF, height & 0x3FFF, 1
    if kind == b'VP8L' and len(data) >= 5 and data[0] == 0x2F:
        bits = struct.unpack('<I', data[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1
    if kind == b'VP8X' and len(data) >= 10:
        width, height = 1 + int.from_bytes(data[4:7], 'little'), 1 + int.from_bytes(data[7:10], 'little')
        frames = 0
        if data[0] & 0x02:  # animation flag: count the ANMF chunks
            position = 20 + length + (length & 1)
            while True:
                f.seek(position)
                head = f.read(8)
                if len(head) < 8:
                    break
                kind, length = struct.unpack('<4sI', head)
                frames += kind == b'ANMF'
                position += 8 + length + (length & 1)
        return width, height, max(frames, 1)
    raise _HeaderError(f'first chunk {kind.decode("latin-1")!r} is not a VP8 / VP8L / VP8X image')


def _pnm(f: BinaryIO) -> tuple[int, int, int]:
    f.seek(0)
    text = f.read(4096)
    if text[:2] == b'P7':  # PAM: WIDTH / HEIGHT lines up to ENDHDR
        words = text.split(b'ENDHDR')[0].split()
        try:
            return int(words[words.index(b'WIDTH') + 1]), int(words[words.index(b'HEIGHT') + 1]), 1
        except (ValueError, IndexError):
            raise _HeaderError('no WIDTH / HEIGHT') from None
    numbers, i = [], 2
    while len(numbers) < 2 and i < len(text):  # whitespace-separated, '#' starts a comment up to the line end
        c = text[i:i + 1]
        if c == b'#':
            end = text.find(b'\n', i)
            i = len(text) if end < 0 else end + 1
        elif c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < len(text) and text[j:j + 1].isdigit():
                j += 1
            numbers.append(int(text[i:j]))
            i = j
        else:
            raise _HeaderError(f'unexpected {c!r} where a number should be')
    if len(numbers) < 2:
        raise _HeaderError('no width and height')
    return numbers[0], numbers[1], 1


_HEADER_READERS: dict[str, Callable[[BinaryIO], tuple[int, int, int]]] = {
    'PNG': _png, 'JPEG': _jpeg, 'BMP': _bmp, 'TIFF': _tiff, 'WebP': _webp, 'PNM': _pnm}


def _header(f: BinaryIO, path: str, fmt: str) -> ImageHeader:
    try:
        width, height, frames = _HEADER_READERS[fmt](f)
    except (_HeaderError, struct.error, OverflowError, ValueError) as err:
        raise ImageError(f'{path}: not a readable image (truncated or corrupt {fmt} header: {err})') from None
    if width <= 0 or height <= 0:
        raise ImageError(f'{path}: not a readable image (its {fmt} header gives a size of {width}x{height})')
    return ImageHeader(fmt, width, height, frames)


def _open(path: str) -> BinaryIO:
    if os.path.isdir(path):
        raise ImageError(f'{path}: is a folder, not an image file')
    try:
        return open(path, 'rb')
    except OSError as err:
        raise ImageError(f'{path}: cannot read: {err.strerror or err}') from None


def _sniff(f: BinaryIO, path: str) -> str:
    fmt = sniff_format(f.read(16))
    if fmt is None:
        raise ImageError(f'{path}: not a readable image (the content is not {FORMATS})')
    return fmt


def image_header(path: PathLike) -> ImageHeader:
    """Format, size and frame count of the image file at ``path`` from its header only (no decoding);
    :class:`ImageError` when the file is empty, not one of :data:`FORMATS` (by content) or its header is corrupt."""
    path = os.fspath(path)
    with _open(path) as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ImageError(f'{path}: empty file (0 bytes)')
        return _header(f, path, _sniff(f, path))


def check_header(path: PathLike, header: ImageHeader, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """:class:`ImageError` for an animated or multi-page file (the frame count named) and for one of more than
    ``max_pixels`` pixels (None or 0: no limit)."""
    path = os.fspath(path)
    if header.frames > 1:
        what = 'a multi-page TIFF' if header.format == 'TIFF' else f'an animated {header.format}'
        unit = 'pages' if header.format == 'TIFF' else 'frames'
        more = '+' if header.format == 'TIFF' and header.frames >= MAX_TIFF_PAGES else ''
        raise ImageError(f'{path}: {what} with {header.frames}{more} {unit}; only single images are read (no first '
                         f'frame is picked silently): save each {unit[:-1]} as its own file')
    if max_pixels and header.pixels > max_pixels:
        raise ImageError(f'{path}: {header.width}x{header.height} pixels ({header.pixels / 1e6:.1f} megapixels) is '
                         f'over the limit of {max_pixels:,} pixels, checked before decoding; if the image is genuine, '
                         f'raise the limit: lipt infer --max-pixels N, read_image(..., max_pixels=N), 0 = no limit')


def check_float_range(source: PathLike, img: np.ndarray, convert: str = 'save it as 8-bit') -> None:
    """The float rule, for image files (:func:`read_image`) and arrays (``upscale_array``) alike: float samples
    (e.g. a 32-bit TIFF) must be finite and lie in [0, 1] (within :data:`FLOAT_SLACK`); :class:`ImageError` naming
    ``source`` (a path, or a description of the array) with the observed minimum and maximum otherwise; 0..255 data
    is told to divide by 255 or ``convert``. Integer images pass."""
    if img.dtype.kind != 'f' or img.size == 0:
        return
    low, high = float(img.min()), float(img.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageError(f'{os.fspath(source)}: float image with NaN or infinite samples (min {low:g}, max '
                         f'{high:g}); float images must hold finite values in [0, 1]')
    if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
        hint = f' (0..255 data: divide by 255, or {convert})' if high <= 255 + FLOAT_SLACK * 255 else ''
        raise ImageError(f'{os.fspath(source)}: float image with values from {low:g} to {high:g}; float images must '
                         f'hold values in [0, 1]{hint}')


def read_image(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` unchanged (depth and alpha kept): (H, W) or (H, W, C), uint8 / uint16 / float32.

    Before decoding: the file must be one of :data:`FORMATS` by content (the extension must be an image extension,
    but a PNG named ``.jpg`` is read as the PNG it is), end with its end marker (PNG, JPEG), hold one frame, and have
    at most ``max_pixels`` pixels (None or 0: no limit). After: floats must lie in [0, 1] (:func:`check_float_range`).
    Every failure is an :class:`ImageError` naming the file.
    """
    path = os.fspath(path)
    check_extension(path)
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ImageError(f'{path}: empty file (0 bytes)')
        fmt = _sniff(f, path)
        f.seek(max(size - END_MARKER_SEARCH, 0))
        if lacks_end_marker(f.read(), FORMAT_EXTENSIONS[fmt]):
            raise ImageError(f'{path}: truncated {fmt} file (no end marker)')
        check_header(path, _header(f, path, fmt), max_pixels)
        f.seek(0)
        data = np.frombuffer(f.read(), dtype=np.uint8)
    native: list[str] = []
    try:
        with _native_stderr(native):
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        lines = str(err).strip().splitlines()
        raise ImageError(f'{path}: not a readable image (OpenCV: {lines[-1] if lines else "error"})') from None
    if img is None or img.size == 0:
        said = ' '.join(native[0].split()) if native else f'corrupt, truncated, or not a {fmt} file'
        raise ImageError(f'{path}: not a readable image ({said})')
    for line in native:  # a decoder's warnings about an image it did read are passed on
        print(line, file=sys.stderr)
    check_float_range(path, img)
    return img


@contextlib.contextmanager
def _native_stderr(lines: list[str]) -> Iterator[None]:
    """Collect what native code (libpng, libtiff, OpenCV's log) writes to file descriptor 2 in the block into
    ``lines``, so that a failed decode is one line that quotes the decoder."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2: nothing to collect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode('utf-8', 'replace').splitlines() if line.strip())


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``); None where unknown."""
    try:
        with open('/proc/meminfo', encoding='ascii') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_output_memory(path: PathLike, shape: tuple[int, ...], itemsize: int, scale: int,
                        available: int | None = None) -> None:
    """:class:`ImageError` when upscaling an image of ``shape`` (H, W[, C]) ``scale`` times would need more memory
    than is ``available`` (default :func:`available_memory`; no check when unknown). The estimate is the output held
    whole: float32 for three colour channels and alpha, then twice at ``itemsize`` bytes per sample."""
    available = available_memory() if available is None else available
    if available is None:
        return
    channels = shape[2] if len(shape) == 3 else 1
    height, width = shape[0] * scale, shape[1] * scale
    need = height * width * (4 * max(channels, 3) + 2 * itemsize * channels)
    if need > available:
        raise ImageError(f'{os.fspath(path)}: the x{scale} output would be {width}x{height} pixels '
                         f'({width * height / 1e6:.0f} megapixels, about {need / 2**30:.1f} GiB in memory), more '
                         f'than the {available / 2**30:.1f} GiB available; upscale it in parts')


# ------------------------------------------------------------------------------------------------------ writing
def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` both exist and are the same file (same device and inode: the same path, a hard link
    or a symbolic link to it)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output: PathLike, inputs: Iterable[PathLike]) -> None:
    """:class:`shutil.SameFileError` (an ``OSError``) naming both paths when ``output`` is the same file as one of
    ``inputs`` (:func:`same_file`): writing it would replace an input."""
    for source in inputs:
        if same_file(output, source):
            raise shutil.SameFileError(f'{os.fspath(output)}: is the same file as the input {os.fspath(source)} (same '
                                       'inode: the same path, a hard link or a symbolic link); write the output '
                                       'elsewhere')


def _temporary_beside(path: str) -> str:
    """A new empty file next to ``path``, created with mode 0o666 so that the umask (and a default ACL) applies as
    to any new file; the name ends in ``.tmp<pid>.<hex>``, never an image or checkpoint extension."""
    folder, name = os.path.split(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)
    for _ in range(100):
        tmp = os.path.join(folder, f'{name[:200]}.tmp{os.getpid()}.{secrets.token_hex(3)}')
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, 'no free temporary file name', path)


def atomic_write(path: PathLike, write: Callable[[str], None], inputs: Iterable[PathLike] = ()) -> None:
    """Call ``write(temporary path)`` beside ``path``, flush it to disk and rename it over ``path`` (``os.replace``).

    Refused first when ``path`` is the same file as one of ``inputs`` (:func:`check_not_input`). When ``write``,
    the flush or the rename fails (disk full, ``ulimit -f``, an encoder error, Ctrl-C), the temporary file is removed,
    an existing ``path`` is left as it was, and the error propagates (an ``OSError`` names ``path``). The new file's
    mode follows the umask. The file (not its folder) is fsynced: atomic for other processes, durable for the data
    but not for the rename.
    """
    path = os.fspath(path)
    check_not_input(path, inputs)
    tmp = _temporary_beside(path)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY | getattr(os, 'O_BINARY', 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(err, OSError) and err.strerror and err.filename in (None, tmp):
            err.filename = path  # the error names the target, not the temporary file (errno errors only: an
            # OSError made from a bare message would print as "[Errno None] None")
        raise


def write_bytes(path: PathLike, data: bytes | bytearray | memoryview | np.ndarray,
                inputs: Iterable[PathLike] = ()) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_write`."""
    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(memoryview(data).cast('B') if isinstance(data, np.ndarray) else data)

    atomic_write(path, write, inputs)


def write_image(path: PathLike, img: np.ndarray, inputs: Iterable[PathLike] = ()) -> None:
    """Encode ``img`` in memory by the extension of ``path``, then write it with :func:`write_bytes` (parent folder
    must exist): a failure leaves no partial file and an existing ``path`` untouched. Refused first when ``path`` is
    the same file as one of ``inputs``."""
    path = os.fspath(path)
    ext = check_extension(path)
    inputs = list(inputs)
    check_not_input(path, inputs)
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error as err:
        lines = str(err).strip().splitlines()
        raise ImageError(f'{path}: OpenCV cannot encode a {img.dtype} {img.shape} image as {ext}: '
                         f'{lines[-1] if lines else "error"}') from None
    if not ok:
        raise ImageError(f'{path}: OpenCV cannot encode a {img.dtype} {img.shape} image as {ext}')
    try:
        write_bytes(path, buf, inputs)
    except shutil.SameFileError:
        raise
    except OSError as err:
        kept = 'the existing file is unchanged' if os.path.exists(path) else 'nothing written'
        raise ImageError(f'{path}: cannot write: {err.strerror or err} ({kept})') from None


def fit_to_format(img: np.ndarray, ext: str) -> tuple[np.ndarray, list[str]]:
    """``img`` made storable as ``ext``: 16-bit reduced to 8 and alpha dropped where the format cannot hold them.

    Returns the array and a note per change (empty when nothing changed).
    """
    notes = []
    if img.dtype == np.uint16 and ext not in DEEP_EXTENSIONS:
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
        notes.append(f'16-bit reduced to 8-bit ({ext} cannot hold 16 bits)')
    if img.dtype == np.float32 and ext not in ('.tif', '.tiff'):
        img = np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
        notes.append(f'float reduced to 8-bit ({ext})')
    if img.ndim == 3 and img.shape[2] == 4 and ext not in ALPHA_EXTENSIONS:
        img = np.ascontiguousarray(img[:, :, :3])
        notes.append(f'alpha dropped ({ext} has no alpha channel)')
    return img, notes
