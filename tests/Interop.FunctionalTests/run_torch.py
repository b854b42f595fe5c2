"""Loads an exported state dict into torch_models and writes the logits for given inputs.

usage: run_torch.py CONFIG.json
CONFIG: {"model", "channels", "height", "width", "classes", "stem", "batch_norm", "dropout",
         "inputs" (float32 NCHW, raw), "count",
         "exports": [{"weights", "format" (pytorch | safetensors), "logits" (float32 output file)}, ...]}
Loads each file strictly (every parameter and buffer name and shape must match) into a fresh model and
prints one JSON line per file.
"""
import json
import sys

import numpy as np
import torch

import torch_models


def main():
    with open(sys.argv[1]) as f:
        c = json.load(f)
    torch.set_num_threads(2)
    x = np.fromfile(c["inputs"], dtype="<f4").reshape(c["count"], c["channels"], c["height"], c["width"])
    for export in c["exports"]:
        model = torch_models.build(c["model"], c["channels"], c["height"], c["width"], c["classes"],
                                   stem=c.get("stem"), batch_norm=c.get("batch_norm", True), dropout=c.get("dropout", 0.0))
        state = torch_models.load_state_dict(export["weights"], export["format"])
        result = model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(x))
        logits.numpy().astype("<f4").tofile(export["logits"])
        print(json.dumps({"format": export["format"], "torch": torch.__version__, "tensors": len(state),
                          "missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys),
                          "shape": list(logits.shape)}))


if __name__ == "__main__":
    main()
