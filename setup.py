"""Install lipt_arch: ``pip install .`` (add ``[test]`` for the test suite, ``[bench]`` for benchmarks/).

The option files in the repository's top-level ``options/`` folder install as the data package ``lipt_arch.options``
(``package_dir`` maps one onto the other), so a wheel carries them: ``basicsr train -opt demo`` and ``lipt options``.
"""
from pathlib import Path

from setuptools import find_packages, setup

version = next(line.split("'")[1] for line in Path('lipt_arch/__init__.py').read_text().splitlines()
               if line.startswith('__version__'))

# options/, options/zoo/ and options/meta_info/ (data only, no __init__.py) -> lipt_arch/options/...
OPTION_PACKAGES = ['lipt_arch.options', 'lipt_arch.options.zoo', 'lipt_arch.options.meta_info']

setup(
    name='lipt_arch',
    version=version,
    description='LIPT (Latency-aware Image Processing Transformer, TIP 2025) as a BasicSR plugin',
    long_description=Path('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=[*find_packages(include=['lipt_arch', 'lipt_arch.*']), *OPTION_PACKAGES],
    include_package_data=True,
    package_dir={package: package.replace('lipt_arch.options', 'options').replace('.', '/')
                 for package in OPTION_PACKAGES},
    package_data={'lipt_arch.options': ['*.yml'], 'lipt_arch.options.zoo': ['*.yml'],
                  'lipt_arch.options.meta_info': ['*'], 'lipt_arch.zoo': ['models.json', 'weights/*.safetensors']},
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.1',
        'torchvision',
        'numpy',
        'opencv-python',
        'Pillow',  # image headers in the option checks (lipt_arch.validation)
        'lmdb',
        'pyyaml',
        'safetensors',
        'scikit-image',
        'tqdm',
    ],
    extras_require={
        'test': ['pytest>=7', 'pytest-timeout', 'ruff>=0.4', 'hypothesis>=6', 'onnx', 'onnxscript', 'onnxruntime',
                 'safetensors', 'psutil', 'spandrel>=0.4.2'],
        # benchmarks/*.py beyond the base install: peer networks (spandrel), plots, machine load
        'bench': ['spandrel>=0.4.2', 'matplotlib', 'psutil'],
    },
    entry_points={'console_scripts': [
        'basicsr = lipt_arch.basicsr_support.command:main',
        'lipt = lipt_arch.cli.lipt_cli:main',
    ]},
)
