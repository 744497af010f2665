"""Small example models shared by the capture tests and the benchmarks."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyBert(nn.Module):
    """A BERT-style encoder in plain torch.nn: embeddings, attention, GELU MLP,
    LayerNorm and (when dropout > 0) dropout; a classifier on the first token."""

    def __init__(self, vocab=50, hidden=32, heads=4, layers=2, seq=16, classes=3, dropout=0.1):
        super().__init__()
        self.heads = heads
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(seq, hidden)
        self.norm = nn.LayerNorm(hidden)
        # Identity rather than Dropout(0): even p = 0 traces a random op.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict({
                "qkv": nn.Linear(hidden, 3 * hidden), "out": nn.Linear(hidden, hidden), "ln1": nn.LayerNorm(hidden),
                "fc1": nn.Linear(hidden, 4 * hidden), "fc2": nn.Linear(4 * hidden, hidden), "ln2": nn.LayerNorm(hidden)}))
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids):
        b, s = ids.shape
        x = self.drop(self.norm(self.word(ids) + self.pos(torch.arange(s))))
        for layer in self.layers:
            q, k, v = layer["qkv"](x).chunk(3, dim=-1)
            split = lambda t: t.reshape(b, s, self.heads, -1).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            att = self.drop(torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1))
            ctx = (att @ v).transpose(1, 2).reshape(b, s, -1)
            x = layer["ln1"](x + self.drop(layer["out"](ctx)))
            x = layer["ln2"](x + self.drop(layer["fc2"](F.gelu(layer["fc1"](x)))))
        return self.head(x[:, 0])
