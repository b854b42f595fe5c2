"""PyTorch definitions of orch's built-in models, with the same parameter names and shapes.

orch trains these networks with TorchSharp (src/Worker/Models); `orch export --format pytorch` and
`--format safetensors` write their state dicts. This module is what a PyTorch user would write to load
them: SimpleCNN, and torchvision's ResNet-18/34/50 (v1.5, the stride on the bottleneck's 3x3 conv) with
either stem. Debian's python3-torch has no torchvision, so the ResNet classes are defined here.
"""
import json
import struct

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """Two conv blocks (conv [+BN] + ReLU + 2x2 max-pool, 32 then 64 channels), fc1 (512) + ReLU, fc2."""

    def __init__(self, in_channels, height, width, num_classes, batch_norm=True, dropout=0.0):
        super().__init__()
        # A conv bias directly before BatchNorm is cancelled by it: orch leaves it out then.
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(32) if batch_norm else None
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(64) if batch_norm else None
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 512)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc2 = nn.Linear(512, num_classes)

    def _block(self, x, conv, bn):
        x = conv(x)
        if bn is not None:
            x = bn(x)
        return self.pool(torch.relu(x))

    def forward(self, x):
        x = self._block(x, self.conv1, self.bn1)
        x = self._block(x, self.conv2, self.bn2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc2(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet for any input channels and classes; stem 'imagenet' (7x7/2 conv + 3x3/2
    max-pool) or 'cifar' (3x3/1 conv, no max-pool)."""

    def __init__(self, block, layers, in_channels=3, num_classes=1000, stem="imagenet", dropout=0.0):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = None
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.bn1 = nn.BatchNorm2d(64)
        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x)


def resnet18(**kw):
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def resnet34(**kw):
    return ResNet(BasicBlock, [3, 4, 6, 3], **kw)


def resnet50(**kw):
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


def build(model, channels, height, width, classes, stem=None, batch_norm=True, dropout=0.0):
    """The network orch builds for this model name and input (stem None: cifar up to 64 px, as orch)."""
    if model == "simple-cnn":
        return SimpleCNN(channels, height, width, classes, batch_norm=batch_norm, dropout=dropout)
    factories = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
    if model not in factories:
        raise ValueError(f"unknown model {model!r}")
    if stem is None:
        stem = "cifar" if max(height, width) <= 64 else "imagenet"
    return factories[model](in_channels=channels, num_classes=classes, stem=stem, dropout=dropout)


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    """A state dict from a .safetensors file (u64 header length, JSON header, raw little-endian data).
    Debian has no python3-safetensors; the format is simple enough to read here."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    state = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        state[name] = t.reshape(info["shape"]).clone()
    return state


def load_state_dict(path, fmt):
    if fmt == "pytorch":
        state = torch.load(path, map_location="cpu")
    elif fmt == "safetensors":
        state = load_safetensors(path)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return state
