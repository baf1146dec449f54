"""Defaults shared by the pipeline and the command line, in a module that imports nothing heavy,
so that the command line starts (and shows progress) before the heavy libraries load."""

import os
from typing import Literal, get_args

DEFAULT_THRESHOLD: float | None = None  # None: each code's own threshold (ml.suggest.decide)
DEFAULT_TOP_K = 3

# The built-in encoders' names, here so that the store can record a new project's encoder and
# the command line can name it without importing the ml package. The multilingual USE is the
# default: on AnnoMI and a 22-code set it beat MiniLM by 5-7 macro-F1 points at 300 labels,
# encodes about 10x faster on CPU and needs no torch (docs/models.md).
USE_MODEL = "use-multilingual-v3"
MINILM_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL = USE_MODEL

# The learner's feature sets (coder_assist.ml.features.Featurizer), named here so that the
# command line can offer them without importing scikit-learn.
FeatureSet = Literal["emb", "emb+prev", "emb+ngrams", "emb+prev+ngrams"]
FEATURE_SETS: tuple[str, ...] = get_args(FeatureSet)
DEFAULT_FEATURES: FeatureSet = "emb+prev+ngrams"


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a container, a
    batch scheduler or ``taskset`` can give it fewer than the machine's ``os.cpu_count()``, and
    a thread per machine core would then fight over the few it has), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
