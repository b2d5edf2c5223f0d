"""DiffMotion (UViT3D-Mixer, intrinsic maps from 3 video frames): the pieces outside the network and the System.

channels: the 9-channel target layout; metrics: angular error, si-MSE, diversity; grid: the 3x3 result picture;
checks: the learning / diversity / timing evaluation behind benchmarks/diffmotion_checks.py.
The System itself is models/systems/diffmotion.py, the network models/nets/uvit3d.py.
"""
