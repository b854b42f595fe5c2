"""Runs Debian's ONNX checker (python3-onnx) on exported models and prints what it saw, one JSON line each.

usage: check_onnx.py MODEL.onnx...
full_check also runs ONNX shape inference over the whole graph, which must agree with the declared output.
"""
import json
import sys

import onnx


def main():
    for path in sys.argv[1:]:
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        out = inferred.graph.output[0].type.tensor_type.shape.dim
        print(json.dumps({
            "path": path, "onnx": onnx.__version__, "ir_version": model.ir_version,
            "opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
            "ops": sorted({n.op_type for n in model.graph.node}),
            "input": [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim],
            "output": [d.dim_param or d.dim_value for d in out],
            "metadata": {p.key: p.value for p in model.metadata_props},
        }))


if __name__ == "__main__":
    main()
