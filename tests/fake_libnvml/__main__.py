"""python -m tests.fake_libnvml fetch: download the nvidia-ml-py releases the GPU tests run through."""

import sys

from tests.fake_libnvml import fetch

if sys.argv[1:] != ["fetch"]:
    sys.exit("usage: python -m tests.fake_libnvml fetch")
fetch()
