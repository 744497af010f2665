#!/usr/bin/python3
"""Writes small ONNX models (seeds of the onnx fuzz target) into OUT_DIR.

Between them they use every op type the importer maps (src/onnx/onnx_import.cc),
float weights, int64 initializers (Reshape's shape, Gather's indices),
Constant nodes, attributes and a symbolic batch dimension. Weights are zeros
stored as raw_data, so every model is a few KiB.

    make_onnx_seeds.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def weight(name, *dims):
    return numpy_helper.from_array(np.zeros(dims, dtype=np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model(name, nodes, inputs, outputs, initializers, opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    m = helper.make_model(graph, producer_name="memfit-fuzz-seeds",
                          opset_imports=[helper.make_operatorsetid("", opset)])
    m.ir_version = 8
    return m


def f32(name, dims):
    if dims is None:  # an output known by name only (the importer infers its shape)
        return helper.make_empty_tensor_value_info(name)
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def mlp():
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Dropout", ["r"], ["d"]),
        helper.make_node("Gemm", ["d", "w2", "b2"], ["y"], transB=1, alpha=1.0, beta=1.0),
    ]
    return model("mlp", nodes, [f32("x", ["batch", 16])], [f32("y", None)],
                 [weight("w1", 32, 16), weight("b1", 32), weight("w2", 4, 32), weight("b2", 4)])


def cnn():
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("ConvTranspose", ["a", "tw"], ["t"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["t"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
        helper.make_node("LogSoftmax", ["y"], ["out"], axis=1),
    ]
    init = [weight("cw", 4, 3, 3, 3), weight("cb", 4), weight("s", 4), weight("bb", 4), weight("m", 4),
            weight("v", 4), weight("tw", 4, 2, 2, 2), weight("fw", 10, 2), weight("fb", 10)]
    return model("cnn", nodes, [f32("x", [1, 3, 8, 8])], [f32("out", None)], init)


def attention():
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], axis=0),
        helper.make_node("LayerNormalization", ["e", "ln_s", "ln_b"], ["l"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["l", "wq"], ["q"]),
        helper.make_node("MatMul", ["l", "wk"], ["k"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Constant", [], ["scale"], value_float=0.125),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "l"], ["o"]),
        helper.make_node("Add", ["o", "e"], ["res"]),
        helper.make_node("Sub", ["res", "e"], ["d"]),
        helper.make_node("Div", ["d", "scale"], ["dd"]),
        helper.make_node("Tanh", ["dd"], ["t"]),
        helper.make_node("Sigmoid", ["t"], ["sg"]),
        helper.make_node("Identity", ["sg"], ["i"]),
        helper.make_node("Concat", ["i", "res"], ["cat"], axis=2),
        helper.make_node("Reshape", ["cat", "shape"], ["y"]),
    ]
    init = [weight("emb", 50, 8), ints("ids", [[1, 2, 3, 4], [5, 6, 7, 8]]), weight("ln_s", 8), weight("ln_b", 8),
            weight("wq", 8, 8), weight("wk", 8, 8), ints("shape", [2, 64])]
    return model("attention", nodes, [], [f32("y", None)], init)


def gelu():
    nodes = [helper.make_node("Gelu", ["x"], ["g"]), helper.make_node("MatMul", ["g", "w"], ["y"])]
    return model("gelu", nodes, [f32("x", ["batch", 8])], [f32("y", None)], [weight("w", 8, 3)], opset=20)


def f32s(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def mobile():
    """Mobile-net and decoder ops: Clip, HardSwish/HardSigmoid, squeeze-and-excite
    (ReduceMean), Resize, DepthToSpace, Pad, Slice, InstanceNormalization."""
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r6"]),
        helper.make_node("HardSwish", ["r6"], ["hs"]),
        helper.make_node("ReduceMean", ["hs"], ["se"], axes=[2, 3], keepdims=1),
        helper.make_node("HardSigmoid", ["se"], ["gate"], alpha=1.0 / 6, beta=0.5),
        helper.make_node("Mul", ["hs", "gate"], ["m"]),
        helper.make_node("InstanceNormalization", ["m", "in_s", "in_b"], ["n"], epsilon=1e-5),
        helper.make_node("LeakyRelu", ["n"], ["l"], alpha=0.2),
        helper.make_node("Resize", ["l", "", "scales"], ["u"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("DepthToSpace", ["u"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("Pad", ["d", "pads"], ["p"]),
        helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["s"]),
        helper.make_node("ReduceSum", ["s"], ["y"], axes=[2, 3], keepdims=0),
    ]
    init = [weight("cw", 8, 3, 1, 1), f32s("lo", 0.0), f32s("hi", 6.0), weight("in_s", 8), weight("in_b", 8),
            f32s("scales", [1, 1, 2, 2]), ints("pads", [0, 0, 1, 1, 0, 0, 1, 1]), ints("starts", [1]),
            ints("ends", [-1]), ints("axes", [3])]
    return model("mobile", nodes, [f32("x", ["batch", 3, 4, 4])], [f32("y", None)], init)


def shapes():
    """Shape arithmetic the importer folds (Shape, Gather, Unsqueeze, Concat,
    Equal, Where, Cast, ConstantOfShape), an Expand, and Pow/Erf/Exp/Log/Sqrt/Neg."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Concat", ["n1", "minus1"], ["want"], axis=0),
        helper.make_node("Equal", ["want", "minus1"], ["keep"]),
        helper.make_node("Where", ["keep", "one", "want"], ["w"]),
        helper.make_node("Cast", ["w"], ["wi"], to=TensorProto.INT64),
        helper.make_node("ConstantOfShape", ["two"], ["ones"], value=numpy_helper.from_array(np.array([1], dtype=np.int64))),
        helper.make_node("Expand", ["tok", "wi"], ["toks"]),
        helper.make_node("Add", ["flat", "toks"], ["a"]),
        helper.make_node("Pow", ["a", "three"], ["p"]),
        helper.make_node("Erf", ["p"], ["e"]),
        helper.make_node("Exp", ["e"], ["ex"]),
        helper.make_node("Sqrt", ["ex"], ["sq"]),
        helper.make_node("Log", ["sq"], ["lg"]),
        helper.make_node("Neg", ["lg"], ["y"]),
    ]
    init = [ints("zero", 0), ints("axes0", [0]), ints("minus1", [-1]), ints("one", [1]), ints("two", [2]),
            weight("tok", 1, 12), f32s("three", 3.0)]
    return model("shapes", nodes, [f32("x", [2, 3, 4])], [f32("y", None)], init, opset=13)


def einsum():
    """Einsum: a projection, attention scores, an ellipsis and a three-operand contraction."""
    nodes = [
        helper.make_node("Einsum", ["x", "w"], ["q"], equation="bhtd,de->bhte"),
        helper.make_node("Einsum", ["q", "q"], ["s"], equation="bhie,bhje->bhij"),
        helper.make_node("Einsum", ["s", "q"], ["c"], equation="bhij,bhje->bhie"),
        helper.make_node("Einsum", ["c", "v"], ["r"], equation="...e,e->..."),
        helper.make_node("Einsum", ["c", "u", "v"], ["o"], equation="bhte,ke,e->bkt"),
        helper.make_node("Einsum", ["o"], ["y"], equation="bkt->bk"),
    ]
    init = [weight("w", 8, 6), weight("v", 6), weight("u", 3, 6)]
    return model("einsum", nodes, [f32("x", ["batch", 2, 3, 8])], [f32("y", None)], init, opset=13)


def masks():
    """Split, Tile, a negative-step Slice, comparisons, Where (masked_fill and
    two tensors), Cast, Not, Max / Min, the newer unary ops, Range and Mod."""
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
        helper.make_node("Tile", ["a", "reps"], ["t"]),
        helper.make_node("Slice", ["x", "last", "first", "one", "minus1"], ["f"]),
        helper.make_node("Greater", ["f", "half"], ["gt"]),
        helper.make_node("Not", ["gt"], ["ng"]),
        helper.make_node("Where", ["ng", "fill", "f"], ["w"]),
        helper.make_node("Less", ["x", "f"], ["lt"]),
        helper.make_node("Where", ["lt", "x", "w"], ["sel"]),
        helper.make_node("Cast", ["lt"], ["ltf"], to=TensorProto.FLOAT),
        helper.make_node("Max", ["sel", "ltf", "half"], ["mx"]),
        helper.make_node("Min", ["mx", "x"], ["mn"]),
        helper.make_node("Abs", ["mn"], ["ab"]),
        helper.make_node("Sin", ["ab"], ["sn"]),
        helper.make_node("Cos", ["sn"], ["cs"]),
        helper.make_node("Elu", ["cs"], ["el"], alpha=0.5),
        helper.make_node("Softplus", ["el"], ["sp"]),
        helper.make_node("Reciprocal", ["sp"], ["rc"]),
        helper.make_node("Range", ["zero", "three", "one"], ["r"]),
        helper.make_node("Mod", ["r", "two"], ["m"], fmod=0),
        helper.make_node("Clip", ["rc", "half"], ["c"]),
        helper.make_node("ReduceSum", ["c"], ["s"], keepdims=1),
        helper.make_node("Add", ["t", "s"], ["y"]),
    ]
    init = [ints("sizes", [2, 4]), ints("reps", [1, 1, 2]), ints("last", [-1]), ints("first", [-(2**63)]),
            ints("one", [1]), ints("minus1", [-1]), ints("zero", 0), ints("three", 3), ints("two", 2),
            f32s("half", 0.5), f32s("fill", -1.0)]
    return model("masks", nodes, [f32("x", ["batch", 6, 4])], [f32("y", None)], init, opset=13)


def windows():
    """Swin's shifted-window mask: zeros of a float ConstantOfShape, an index
    grid folded with broadcasting, ScatterND into the zeros, Dropout's unread
    mask."""
    nodes = [
        helper.make_node("ConstantOfShape", ["mask_shape"], ["zeros"],
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Reshape", ["rows", "col_shape"], ["col"]),
        helper.make_node("Add", ["col", "cols"], ["grid"]),
        helper.make_node("Unsqueeze", ["grid", "last_axis"], ["g1"]),
        helper.make_node("Concat", ["g1", "g1"], ["idx"], axis=-1),
        helper.make_node("ScatterND", ["zeros", "idx", "cnt"], ["marked"]),
        helper.make_node("Dropout", ["x"], ["xd", "xd_mask"]),
        helper.make_node("Mul", ["xd", "marked"], ["y"]),
    ]
    init = [ints("mask_shape", [4, 4]), ints("rows", [0, 1]), ints("col_shape", [2, 1]), ints("cols", [1, 2]),
            ints("last_axis", [-1]), helper.make_tensor("cnt", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])]
    return model("windows", nodes, [f32("x", ["batch", 4, 4])], [f32("y", None)], init, opset=13)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for build in (mlp, cnn, attention, gelu, mobile, shapes, einsum, masks, windows):
        m = build()
        with open(os.path.join(out, build.__name__ + ".onnx"), "wb") as f:
            f.write(m.SerializeToString())


if __name__ == "__main__":
    main()
