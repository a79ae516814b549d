#!/usr/bin/env python3
"""Exports a segger-train checkpoint (.safetensors) as a Lightning checkpoint that segger loads.

segger-train writes its weights under `model.<PyG name>` (F32), the names that segger's LitSegger
has for its to_hetero model, with the model config in the file's metadata (`model_config`). This
script turns such a file (or any safetensors file of those weights) into a `.ckpt`:

  full (default, needs segger_dev installed): builds segger's own `Segger` under `to_hetero`,
      loads the weights strictly, wraps it in segger's `LitSegger(model)` exactly as segger's
      training does (its save_hyperparameters() pickles the model into the checkpoint), writes the
      Lightning checkpoint dict and checks that `LitSegger.load_from_checkpoint` gives back the
      same weights. Use it with segger's prediction (`load_model(<dir>)` picks the newest
      `epoch=E-step=S.ckpt` of a directory, so name the output accordingly) or directly:
          from segger.training.train import LitSegger
          lit = LitSegger.load_from_checkpoint("epoch=0-step=0.ckpt", weights_only=False)
      (weights_only=False because the model itself is pickled in it, as in segger's own checkpoints:
      torch >= 2.6 refuses that by default, for segger's checkpoints and these alike).
  --state-dict-only (needs torch only): writes {"state_dict": ..., "hyper_parameters": config} for
      a LitSegger you construct yourself: `lit.load_state_dict(torch.load(p)["state_dict"])`.

Only segger_dev main's architecture (segger-train `--no-residual --no-l2-normalize`) exists in
segger_dev main; a checkpoint of the documented architecture (residual linears `lin_first`,
`lin_mid_layers`, `lin_last`, L2 normalization; segger_dev commit 23023a2) exports with
--state-dict-only for a Segger of that commit.

Requirements: torch, torch_geometric, lightning (and segger_dev for the full mode), e.g.
    python3 -m venv /tmp/ptvenv && /tmp/ptvenv/bin/pip install torch torch_geometric lightning
    /tmp/ptvenv/bin/pip install -e <your segger_dev checkout>
Usage:
    python Scripts/export_to_segger.py RUN/checkpoints/best.safetensors OUT/epoch=0-step=0.ckpt
    python Scripts/export_to_segger.py weights.safetensors out.ckpt --state-dict-only
"""
import argparse
import json
import re
import struct
import sys

import torch

METADATA = (["tx", "bd"], [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")])
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def read_safetensors(path):
    """Tensors and metadata of a safetensors file (8-byte header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n:]
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=DTYPES[info["dtype"]]) if e > b else \
            torch.empty(0, dtype=DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta


def model_config(weights, meta):
    """The segger-train ModelConfig: from the metadata when present, else read off the shapes."""
    if "model_config" in meta:
        c = json.loads(meta["model_config"])
        return {"num_tx_tokens": c["numTxTokens"], "init_emb": c["initEmb"], "hidden_channels": c["hiddenChannels"],
                "out_channels": c["outChannels"], "heads": c["heads"], "num_mid_layers": c["midLayers"],
                "tx_feature_dim": c.get("txFeatureDim"), "bd_feature_dim": c["bdFeatureDim"],
                "residual": c["residual"], "l2_normalize": c["l2Normalize"], "aggr": c.get("aggr", "sum")}
    emb = weights["tx_embedding.tx.weight"]
    att_first = weights["conv_first.tx__neighbors__tx.att"]
    att_last = weights["conv_last.tx__neighbors__tx.att"]
    mids = {int(m.group(1)) for k in weights if (m := re.match(r"conv_mid_layers\.(\d+)\.", k))}
    lin0_tx = weights["lin0.tx.weight"]
    residual = "lin_first.tx.weight" in weights
    return {"num_tx_tokens": emb.shape[0], "init_emb": emb.shape[1], "hidden_channels": att_first.shape[2],
            "out_channels": att_last.shape[2], "heads": att_first.shape[1], "num_mid_layers": len(mids),
            "tx_feature_dim": lin0_tx.shape[1] if lin0_tx.shape[1] > 1 else None,
            "bd_feature_dim": weights["lin0.bd.weight"].shape[1], "residual": residual,
            "l2_normalize": residual, "aggr": "sum"}


def dummy_graph(cfg):
    """Two transcripts and two boundaries: enough to materialize PyG's lazy layers."""
    from torch_geometric.data import HeteroData
    g = HeteroData()
    if cfg["tx_feature_dim"]:
        g["tx"].x = torch.zeros(2, cfg["tx_feature_dim"])
    else:
        g["tx"].x = torch.zeros(2, dtype=torch.long)
    g["bd"].x = torch.zeros(2, cfg["bd_feature_dim"])
    e = torch.tensor([[0, 1], [0, 1]])
    g["tx", "neighbors", "tx"].edge_index = e
    g["tx", "belongs", "bd"].edge_index = e
    return g


def export_full(weights, cfg, meta, out, learning_rate):
    import lightning
    from torch_geometric.nn import to_hetero
    from segger.models.segger_model import Segger
    from segger.training.train import LitSegger

    if cfg["residual"] or cfg["l2_normalize"]:
        sys.exit("this checkpoint has the documented architecture (residual linears / L2 normalization), which "
                 "segger_dev main's Segger does not have: export it with --state-dict-only for a Segger of "
                 "segger_dev commit 23023a2, or train with --no-residual --no-l2-normalize")
    segger = Segger(num_tx_tokens=cfg["num_tx_tokens"], init_emb=cfg["init_emb"],
                    hidden_channels=cfg["hidden_channels"], num_mid_layers=cfg["num_mid_layers"],
                    out_channels=cfg["out_channels"], heads=cfg["heads"])
    model = to_hetero(segger, METADATA, aggr=cfg["aggr"])
    g = dummy_graph(cfg)
    with torch.no_grad():
        model(g.x_dict, g.edge_index_dict)
    model.load_state_dict(weights, strict=True)
    lit = LitSegger(model=model, learning_rate=learning_rate)
    ckpt = {
        "epoch": int(meta.get("epoch", 0)),
        "global_step": int(meta.get("global_step", 0)),
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": lit.state_dict(),
        "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": dict(lit.hparams),
    }
    torch.save(ckpt, out)
    # Check: segger's own loading gives back these weights and the same embeddings.
    # (weights_only=False: the pickled model is what segger's own checkpoints hold too; torch >= 2.6
    # refuses it by default, so segger's load_model needs the same flag with current torch/Lightning.)
    back = LitSegger.load_from_checkpoint(out, map_location="cpu", weights_only=False)
    sd = back.state_dict()
    assert sd.keys() == ckpt["state_dict"].keys(), "state_dict names differ after loading"
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(sd[k], v), f"{k} differs after loading"
    with torch.no_grad():
        a, b = model(g.x_dict, g.edge_index_dict), back.model(g.x_dict, g.edge_index_dict)
    for t in a:
        assert torch.equal(a[t], b[t]), f"embeddings of {t} differ after loading"


def export_state_dict(weights, cfg, meta, out, learning_rate):
    ckpt = {
        "epoch": int(meta.get("epoch", 0)),
        "global_step": int(meta.get("global_step", 0)),
        "state_dict": {"model." + k: v for k, v in weights.items()},
        "hyper_parameters": dict(cfg, learning_rate=learning_rate),
    }
    torch.save(ckpt, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="segger-train checkpoint or weights (.safetensors)")
    p.add_argument("out", help="Lightning checkpoint to write (.ckpt)")
    p.add_argument("--state-dict-only", action="store_true", help="write state_dict + config only (no segger needed)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="LitSegger's learning_rate hyper-parameter")
    a = p.parse_args(argv)

    tensors, meta = read_safetensors(a.checkpoint)
    weights = {}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            continue  # segger-train's AdamW moments: not part of segger's model
        weights[k[len("model."):] if k.startswith("model.") else k] = v.float() if v.is_floating_point() else v
    cfg = model_config(weights, meta)
    if a.state_dict_only:
        export_state_dict(weights, cfg, meta, a.out, a.learning_rate)
    else:
        export_full(weights, cfg, meta, a.out, a.learning_rate)
    print(f"wrote {a.out}: {len(weights)} tensors, "
          f"{sum(v.numel() for v in weights.values()):,} numbers, config {json.dumps(cfg)}")


if __name__ == "__main__":
    main()
