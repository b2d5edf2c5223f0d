"""A torch Dataset over a packed omage set, in model space ([-1, 1], background -1), ready for a diffusion model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.omages import format as fmt


class OmageDataset(torch.utils.data.Dataset):
    """Items keyed by index or (index, seed): {'omage': float32 [C, R, R] in model space, 'label': long, 'index'}.

    `channels` selects a slice (e.g. format.GEOMETRY for a geometry generator); `flip` (off by default) mirrors the
    image left-right with probability 1/2 from a generator seeded by (index, seed), which keeps the charts intact
    but changes the atlas layout. Only rows whose record has success=True are used.
    """

    def __init__(self, array_path: str | Path, channels: slice = slice(0, fmt.N_CHANNELS), flip: bool = False):
        arr, records = fmt.load_packed(array_path, mmap=True)
        self.rows = np.array([i for i, r in enumerate(records) if r.get("success", True)], dtype=np.int64)
        self.array, self.records = arr, records
        self.channels, self.flip = channels, flip
        self.labels = torch.tensor([int(records[i].get("class_id", 0)) for i in self.rows], dtype=torch.long)
        self.num_classes = int(max((r.get("class_id", 0) for r in records), default=0)) + 1

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, key) -> dict:
        index, seed = key if isinstance(key, (tuple, list)) else (key, key)
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"omage index {index} out of range (0..{len(self) - 1})")
        raw = np.asarray(self.array[self.rows[index]], dtype=np.float32) / fmt.UINT16_MAX
        x = torch.from_numpy(fmt.to_model(fmt.clean(raw))).permute(2, 0, 1)[self.channels].contiguous()
        if self.flip:
            g = torch.Generator().manual_seed(int(index) * 1_000_003 + int(seed))
            if torch.rand((), generator=g) < 0.5:
                x = x.flip(-1)
        return {"omage": x, "label": self.labels[index], "index": torch.tensor(index)}
