"""Pictures people look at: a sheet of an omage's channels and a few shaded views of its decoded mesh, rendered
with the same vectorised rasteriser as the encoder (screen space + depth test)."""
from __future__ import annotations

import numpy as np

from models.omages import format as fmt
from models.omages.decode import DecodedMesh, patches
from models.omages.raster import rasterize
from models.omages.textures import linear_to_srgb


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    k = max(1, size // img.shape[0])
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def _label_colors(labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    pal = np.concatenate([[[0, 0, 0]], rng.uniform(0.25, 1.0, (int(labels.max()) + 1, 3))])
    return pal[labels]


def channel_tiles(omage: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(title, HxWx3 image in [0, 1]) for position, occupancy, normal, albedo, metallic, roughness, charts."""
    om = fmt.clean(omage)
    occ = om[..., fmt.OCC]
    grey = lambda a: np.repeat(a[..., None], 3, axis=2)  # noqa: E731
    labels, n = patches(occ >= 0.5)
    return [("position xyz", om[..., fmt.POS]), ("occupancy", grey(occ)), ("normal", om[..., fmt.NRM]),
            ("albedo (sRGB)", linear_to_srgb(om[..., fmt.ALB]) * occ[..., None]), ("metallic", grey(om[..., fmt.MET])),
            ("roughness", grey(om[..., fmt.RGH])), (f"{n} charts", _label_colors(labels))]


def _look_at(azimuth: float, elevation: float) -> np.ndarray:
    """Rotation taking world (y up) to camera (x right, y down, z into the screen)."""
    az, el = np.radians(azimuth), np.radians(elevation)
    forward = -np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])  # from the eye to the origin
    right = np.cross(forward, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, -up, forward])


def render_view(mesh: DecodedMesh, size: int = 256, azimuth: float = 30.0, elevation: float = 20.0) -> np.ndarray:
    """Orthographic view of the mesh, albedo x (ambient + Lambert with a head light), two-sided, on white."""
    img = np.ones((size, size, 3))
    if mesh.empty:
        return img
    R = _look_at(azimuth, elevation)
    cam = mesh.vertices @ R.T
    xy = (cam[:, :2] / 1.8 * 0.5 + 0.5) * size - 0.5
    tri = xy[mesh.faces]
    face, bary = rasterize(tri, size, size, depth=cam[mesh.faces, 2])
    hit = face >= 0
    f = mesh.faces[face[hit]]
    w = bary[hit][:, :, None]
    alb = (w * mesh.albedo[f]).sum(axis=1)
    v = mesh.vertices
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = R[2] * -1 + np.array([0.3, 0.6, 0.0])
    light /= np.linalg.norm(light)
    shade = 0.25 + 0.75 * np.abs(n @ light)
    img[hit] = np.clip(linear_to_srgb(alb * shade[:, None]), 0, 1)
    return img


def sheet(omage: np.ndarray, mesh: DecodedMesh | None = None, tile: int = 192, views=((30, 20), (120, 20), (210, 20),
          (300, 45))) -> np.ndarray:
    """One RGB image: the channel tiles on the first row, rendered views of `mesh` on the second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = channel_tiles(omage)
    ncol = max(len(tiles), len(views) if mesh is not None else 0)
    nrow = 2 if mesh is not None else 1
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 2.2, nrow * 2.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, im) in zip(axes[0], tiles):
        ax.imshow(np.clip(_upscale(im, tile), 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    if mesh is not None:
        for ax, (az, el) in zip(axes[1], views):
            ax.imshow(render_view(mesh, tile * 2, az, el))
            ax.set_title(f"decoded, az {az}", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def labelled_grid(tiles: list[np.ndarray], titles: list[str], cols: int) -> np.ndarray:
    """Square RGB tiles in rows of `cols`, each with its title above it, as one image (white background)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(tiles) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 1.95), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, tile, title in zip(axes.ravel(), tiles, titles):
        ax.imshow(np.clip(tile, 0, 1))
        ax.set_title(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out
