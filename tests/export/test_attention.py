"""The exported graph's attention: onnxruntime's fused op, its flash branch for unpadded batches, and the fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import MPNetConfig, MPNetModel, XLMRobertaConfig, XLMRobertaModel

from embedtune.export.attention import MHA_OP, ONNX_ATTENTION, attention_for_export
from embedtune.export.graph import write_graph

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

UNEQUAL = ["plum", "the mango is sweet fruit on a tree and the bus is fast on the road"]
EQUAL = ["the apple is red", "the lemon is sour"]


def run_graph(path: Path, model: SentenceTransformer, features: dict[str, torch.Tensor]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    return session.run(None, {name: features[name].numpy() for name in names})[0]


def pytorch(model: SentenceTransformer, features: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return model(dict(features))["sentence_embedding"].numpy()


def op_types(graph: onnx.GraphProto) -> list[str]:
    """Every node's type, subgraphs included."""
    types = []
    for node in graph.node:
        types.append(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                types += op_types(attribute.g)
    return types


def test_fused_attention_matches_pytorch_padded_and_unpadded(tiny_model_dir, tmp_path, capfd):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu", model_kwargs={"attn_implementation": "eager"})
    capfd.readouterr()
    written = write_graph(model.eval(), tmp_path / "model.onnx")
    assert written.attention == f"onnxruntime {MHA_OP}"
    assert "shape inference" not in capfd.readouterr().err  # torch's C++ exporter warns on an untyped custom op
    assert model[0].auto_model.config._attn_implementation == "eager"  # restored after the export

    layers = model[0].auto_model.config.num_hidden_layers
    types = op_types(onnx.load(str(tmp_path / "model.onnx")).graph)
    assert types.count("If") == layers and types.count(MHA_OP) == 2 * layers  # a flash and a masked branch
    assert "Softmax" not in types

    padded, unpadded = model.preprocess(UNEQUAL), model.preprocess(EQUAL)
    assert padded["attention_mask"].min() == 0 and unpadded["attention_mask"].min() == 1
    for features in (padded, unpadded):  # one batch through each branch of the If
        got, expected = run_graph(tmp_path / "model.onnx", model, features), pytorch(model, features)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # padding really is masked: the short text alone embeds as it does beside the long one
    alone = run_graph(tmp_path / "model.onnx", model, model.preprocess(UNEQUAL[:1]))
    np.testing.assert_allclose(alone[0], run_graph(tmp_path / "model.onnx", model, padded)[0], atol=1e-5)


def test_models_outside_the_attention_interface_keep_eager_attention(tiny_model_dir, tmp_path):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu").eval()
    bert = model[0].auto_model.config
    torch.manual_seed(0)
    mpnet = MPNetModel(
        MPNetConfig(
            vocab_size=bert.vocab_size,
            hidden_size=bert.hidden_size,
            num_hidden_layers=1,
            num_attention_heads=bert.num_attention_heads,
            intermediate_size=bert.intermediate_size,
        )
    ).eval()
    model[0].model = mpnet  # transformers 5's MPNet computes its own attention
    with attention_for_export(model) as fused:
        assert not fused and mpnet.config._attn_implementation != ONNX_ATTENTION

    written = write_graph(model, tmp_path / "model.onnx")
    assert written.attention == "traced eager"
    assert MHA_OP not in op_types(onnx.load(str(tmp_path / "model.onnx")).graph)
    features = model.preprocess(UNEQUAL)
    np.testing.assert_allclose(
        run_graph(tmp_path / "model.onnx", model, features), pytorch(model, features), atol=1e-5
    )


def test_xlm_roberta_encoder_is_fused_too(tiny_model_dir, tmp_path):
    """The e5 / bge-m3 family: an XLM-RoBERTa encoder exports with the fused attention and matches PyTorch."""
    model = SentenceTransformer(str(tiny_model_dir), device="cpu").eval()
    bert = model[0].auto_model.config
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=bert.vocab_size,
        hidden_size=bert.hidden_size,
        num_hidden_layers=2,
        num_attention_heads=bert.num_attention_heads,
        intermediate_size=bert.intermediate_size,
    )
    model[0].model = XLMRobertaModel(config).eval()
    assert write_graph(model, tmp_path / "model.onnx").attention == f"onnxruntime {MHA_OP}"
    for texts in (UNEQUAL, EQUAL):
        features = model.preprocess(texts)
        got, expected = run_graph(tmp_path / "model.onnx", model, features), pytorch(model, features)
        np.testing.assert_allclose(got, expected, atol=1e-5)
