"""Diffusion as Shader (Gu et al. 2025), part 1: 3D tracking videos without any pretrained weights.

A tracking video (paper Fig. 2a-b) shows 3D points projected into every frame, each drawn in a colour fixed
from its first-frame image position and inverse depth, on black. Modules, smallest first:

    camera      pinhole intrinsics (K or FOV), project / unproject, 4x4 poses
    templates   camera-motion strings ("trans", "rot", "spiral", ";") and object-motion templates
    colors      the colour encoder / decoder and its JSON sidecar
    splat       vectorised z-buffer point splatting (CPU / GPU) and a per-point reference loop
    raster      a small triangle rasteriser (meshes instead of Blender)
    sources     depth maps, 3D tracks, 2D tracks + depth, meshes -> Tracks
    procedural  spheres / boxes / planes with motions -> RGB, tracking video, depth, masks
    video       MP4 (libx264 yuv420p) and lossless NPZ / PNG, previews

The model side (part 2) reads `video.load_tracking(path)` -> ([T, H, W, 3] float in [0, 1], sidecar dict).
"""
FRAMES = 49  # CogVideoX-5B-I2V: 49 frames = 13 latent frames
HEIGHT, WIDTH = 480, 720  # the base model's learned positional embedding fixes 60 x 90 latents
