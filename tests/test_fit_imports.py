"""What `probes fit` imports: the label-leak check reads the ImageNet lists without importing timm or open_clip."""

from __future__ import annotations

import subprocess
import sys

from featstore import classnames


def test_imagenet_lists_read_from_files_equal_the_libraries():
    from open_clip import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    assert classnames._in1k() == {w: k for k, w in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    assert classnames._in1k_names() == frozenset(n.lower() for n in IMAGENET_CLASSNAMES)


def test_leak_check_imports_neither_timm_nor_open_clip():
    """open_clip and timm cost ~3.5 s each to import: most of a small `probes fit` before this."""
    code = ("import sys; from featstore.provenance import label_leak_warning, imagenet_fraction\n"
            "assert label_leak_warning('eva_giant_336', [str(i) for i in range(10)]) is None\n"
            "assert imagenet_fraction(['hot_dog', 'n01440764', 'cat_sketch']) == 2 / 3\n"
            "print(sorted(m for m in ('timm', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
