"""Pillow's side of bench/DecodeCrop: decode + RandomResizedCrop(224) + horizontal flip of every
JPEG under a folder, in one process on one thread; prints images/s once per round. With --draft
the JPEG decoder may downscale first (Pillow's draft mode, as our decoder does; torchvision does
not use it)."""
import math
import os
import random
import sys
import time

from PIL import Image

root, rounds = sys.argv[1], int(sys.argv[2])
draft = "--draft" in sys.argv
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.lower().endswith((".jpg", ".jpeg")))
rng = random.Random(1)
SIDE = 224


def window(width, height):
    # torchvision.transforms.RandomResizedCrop.get_params: scale (0.08, 1), ratio (3/4, 4/3).
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    return 0, 0, width, height


def one(path):
    with Image.open(path) as img:
        full = img.size
        x, y, w, h = window(*full)
        if draft:
            factor = max(1.0, min(w, h) / SIDE)
            img.draft("RGB", (int(full[0] / factor), int(full[1] / factor)))
        img = img.convert("RGB")
        sx, sy = img.size[0] / full[0], img.size[1] / full[1]
        crop = img.resize((SIDE, SIDE), Image.BILINEAR, box=(x * sx, y * sy, (x + w) * sx, (y + h) * sy))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return crop.tobytes()


for _ in range(rounds):
    start = time.perf_counter()
    for p in files:
        one(p)
    print(f"{len(files) / (time.perf_counter() - start):.1f}", flush=True)
