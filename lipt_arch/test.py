"""``python -m lipt_arch.test -opt X.yml [BasicSR flags]``: the same as ``basicsr test``."""
import sys

from lipt_arch.basicsr_support.command import main

if __name__ == '__main__':
    sys.exit(main(['test', *sys.argv[1:]]))
