"""Where things live in the repository: its root and the folders under it the jobs use."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# Where the jobs write by default (gitignored): the main job's stages, the study, pre-training.
RUNS_DIR = os.path.join(REPO_ROOT, 'runs')
# The gin variants: `gin/augment/s1..s4.gin`, `gin/init/*.gin`.
GIN_DIR = os.path.join(REPO_ROOT, 'gin')
# Generated data sets (gitignored), e.g. the embedded emoji scenes.
CACHE_DIR = os.path.join(REPO_ROOT, '.cache')
