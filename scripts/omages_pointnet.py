#!/usr/bin/env python
"""Train the small PointNet feature network for P-FID-proc on a procedural omage set (CPU is enough).

    python scripts/omages_dataset.py --out data_cache/omages/pn800 --train-per-class 80 --test-per-class 20
    python scripts/omages_pointnet.py --data data_cache/omages/pn800 --out ckpts/omages_pointnet.safetensors

Clouds are area-uniform samples of the *decoded* 64x64 omages (what a generator's samples will look like), 2,048
points each, normalised to zero centroid and unit max radius, augmented with a random scale 0.8-1.2 and jitter
sigma 0.01. The export is refused unless the test accuracy reaches --gate (default 0.95). Prints and stores in the
metadata: test accuracy, the SHA-256 of the file, and the reference floor FD(train features, test features) and KID.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.core.cli import Parser, UserError, cli_main, finite_float, int_at_least, set_threads  # noqa: E402


def clouds_of(array_path: Path, n_points: int, seed: int):
    """(clouds [N, P, 3], labels [N]) from a packed omage set: decode, then sample the surface."""
    import numpy as np
    from tqdm import tqdm

    from models.omages import format as fmt
    from models.omages.decode import decode
    from models.omages.metrics import sample_surface

    arr, records = fmt.load_packed(array_path)
    clouds, labels = [], []
    for i, rec in enumerate(tqdm(records, desc=f"decode {array_path.name}", unit="shape")):
        if not rec.get("success", True):
            continue
        mesh = decode(np.asarray(arr[i], np.float32) / fmt.UINT16_MAX)
        if mesh.empty:
            continue
        pts, _ = sample_surface(mesh.vertices, mesh.faces, n_points, seed=seed + i)
        clouds.append(pts.astype(np.float32))
        labels.append(int(rec["class_id"]))
    if not clouds:
        raise UserError(f"{array_path}: no decodable shapes")
    return np.stack(clouds), np.array(labels)


def main(argv=None) -> int:
    p = Parser(description=__doc__)
    p.add_argument("--data", required=True, help="dataset folder from omages_dataset.py")
    p.add_argument("--out", default="ckpts/omages_pointnet.safetensors")
    p.add_argument("--epochs", type=int_at_least(1), default=12)
    p.add_argument("--batch", type=int_at_least(2), default=32)
    p.add_argument("--lr", type=finite_float(0.0, lo_open=True), default=1e-3)
    p.add_argument("--points", type=int_at_least(64), default=2048, help="points per cloud (features, test)")
    p.add_argument("--train-points", type=int_at_least(64), default=1024,
                   help="random subset of each cloud per training step (speed on CPU)")
    p.add_argument("--gate", type=finite_float(0.0, 1.0), default=0.95)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--threads", type=int_at_least(1), default=2)
    args = p.parse_args(argv)
    data = Path(args.data)
    for split in ("train", "test"):
        if not (data / f"{split}_omages64.npy").is_file():
            raise UserError(f"--data {data}: no {split}_omages64.npy (run scripts/omages_dataset.py first)")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: expected a .safetensors path")
    set_threads(args.threads)

    import numpy as np
    import torch
    from tqdm import tqdm

    from models.omages import pointnet as pn
    from models.omages.metrics import frechet_distance, kid

    torch.manual_seed(args.seed)
    xtr, ytr = clouds_of(data / "train_omages64.npy", args.points, seed=args.seed)
    xte, yte = clouds_of(data / "test_omages64.npy", args.points, seed=args.seed + 10_000_000)
    k = int(max(ytr.max(), yte.max())) + 1
    model = pn.PointNet(pn.PointNetConfig(num_classes=k, points=args.points))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * int(np.ceil(len(xtr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    bar = tqdm(total=steps, desc="train", unit="step")
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=g)
        for s in range(0, len(order), args.batch):
            idx = order[s:s + args.batch]
            if len(idx) < 2:
                continue
            sub = torch.randint(0, args.points, (len(idx), args.train_points), generator=g)
            x = torch.as_tensor(xtr[idx.numpy()])[torch.arange(len(idx))[:, None], sub]
            x = pn.normalize_clouds(x)
            x = x * torch.empty(len(idx), 1, 1).uniform_(0.8, 1.2, generator=g)
            x = x + 0.01 * torch.randn(x.shape, generator=g)
            loss = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(ytr[idx.numpy()]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
    bar.close()
    train_s = time.time() - t0
    ftr, ltr = pn.extract(model, xtr)
    fte, lte = pn.extract(model, xte)
    acc = float((lte.argmax(1) == yte).mean())
    train_acc = float((ltr.argmax(1) == ytr).mean())
    fd = frechet_distance(ftr, fte)
    kd = kid(ftr, fte, subsets=100, subset_size=min(len(ftr), len(fte), 1000), seed=args.seed)
    report = {"test_accuracy": acc, "train_accuracy": train_acc, "fd_train_test": fd, "kid_train_test": kd,
              "train_shapes": int(len(xtr)), "test_shapes": int(len(xte)), "epochs": args.epochs,
              "train_seconds": round(train_s, 1), "seed": args.seed, "points": args.points,
              "train_points": args.train_points}
    print(json.dumps(report, indent=1))
    if acc < args.gate:
        raise UserError(f"test accuracy {acc:.3f} is below the gate {args.gate}: features not exported")
    pn.save(model, out, step=steps, extra={"report": json.dumps(report)})
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB) sha256 {digest}")
    return 0


if __name__ == "__main__":
    cli_main(main)
