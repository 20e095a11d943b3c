"""The PyTorch figures of harness::settings' crop test: bilinear resizing as
`F.interpolate(mode="bilinear", align_corners=False)` does it.

    /work/torch-venv/bin/python bench/torch_bilinear.py
"""
import torch
import torch.nn.functional as F

image = torch.tensor([(k * k % 7) for k in range(12)], dtype=torch.float64).reshape(1, 1, 3, 4)
print("TORCH_UP_3X4_TO_5X7", F.interpolate(image, size=(5, 7), mode="bilinear", align_corners=False).flatten().tolist())

frame = torch.tensor([(k * 5 % 11) for k in range(20)], dtype=torch.float64).reshape(1, 1, 4, 5)
crop = frame[:, :, 1:3, 1:4]  # scale 0.6 of 4x5 -> 2x3, corner (1, 1)
print("TORCH_CROP_4X5", F.interpolate(crop, size=(4, 5), mode="bilinear", align_corners=False).flatten().tolist())
