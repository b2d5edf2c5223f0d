"""Omages (Yan et al. 2024, "An Object is Worth 64x64 Pixels"): meshes with PBR materials <-> 12-channel object images.

format     channel layout, file/model space, .npz (uint16) and packed-array I/O with validation
raster     vectorised triangle rasteriser (UV space for baking, screen space for previews)
encode     mesh -> omage: normalise, xatlas charts, pack, bake, 1-px ring, sparse pooling
decode     omage -> mesh / point cloud / GLB
procedural multi-part shape families with per-part PBR materials (the self-made dataset)
metrics    exact surface distances, distribution metrics (MMD/COV/1-NNA, FD/KID), omage statistics
pointnet   small PointNet classifier whose features give a weight-free P-FID substitute
dataset    torch Dataset over a packed omage set, in model space
"""
