"""``python -m lipt_arch.train -opt X.yml [BasicSR flags]``: the same as ``basicsr train``."""
import sys

from lipt_arch.basicsr_support.command import main

if __name__ == '__main__':
    sys.exit(main(['train', *sys.argv[1:]]))
