"""A base for the small test models built around one linear layer."""

import torch.nn as nn


class FcModule(nn.Module):
    """One nn.Linear(n, m) as self.fc, created first; subclasses write forward()."""

    def __init__(self, n=4, m=4):
        super().__init__()
        self.fc = nn.Linear(n, m)
