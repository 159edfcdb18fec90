import importlib
import subprocess
import sys


def test_basicsr_imports_after_lipt_arch_in_fresh_interpreter():
    code = ('import lipt_arch, basicsr.data, basicsr.models, basicsr.archs; '
            'from torchvision.transforms.functional_tensor import rgb_to_grayscale; '
            'from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY; '
            'assert "LIPT" in ARCH_REGISTRY._obj_map and "LIPT_small" in ARCH_REGISTRY._obj_map; print("ok")')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


def test_shim_is_the_public_function():
    import torchvision.transforms.functional as functional

    shim = importlib.import_module('torchvision.transforms.functional_tensor')
    assert shim.rgb_to_grayscale is functional.rgb_to_grayscale
