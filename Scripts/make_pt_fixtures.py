#!/usr/bin/env python3
"""Writes the small torch fixtures of Tests/Fixtures/pt/ (run once; the outputs are committed).

Needs: torch, torch_geometric, lightning, numpy (CPU is enough), e.g.
    python3 -m venv /tmp/ptvenv && /tmp/ptvenv/bin/pip install torch torch_geometric lightning
    /tmp/ptvenv/bin/python Scripts/make_pt_fixtures.py            # writes Tests/Fixtures/pt/
    /tmp/ptvenv/bin/python Scripts/make_pt_fixtures.py --tiles-only   # no lightning: tiles only, model.ckpt kept
A `.pt` tile that already exists with the same contents is left as it is (torch.save's bytes vary
between torch versions), so that regenerating the expected files does not churn the tiles.

Made with the real torch.save / Lightning Trainer.save_checkpoint (no emulation), laid out as segger's
`STSampleParquet.save` lays out its tiles: a PyG HeteroData with tx.{id,pos,x}, bd.{id,pos,x}
(bd.id a numpy object array of strings), (tx,neighbors,tx), (tx,neighbors,bd) and (tx,belongs,bd)
edges, pos tensors stored transposed (non-contiguous, stride (1, N)) as segger's come.

For every `<name>.pt` tile there is `<name>.expected.safetensors`: the segger-tile v2 tensors that the
Swift reader must produce from it (tx.pos/bd.pos contiguous, segger's all-NaN per-vertex bd.x as zeros
[N_bd, F], tx.id int64, bd.id as U8 [N_bd, W] zero-padded UTF-8 rows), with `bd.id` also as a JSON list
in the metadata. `tile_xenium_ids` carries ids as Xenium's look (int64 above 2^53, 8 letters + "-1",
and one multi-byte UTF-8 id). `model.ckpt` is a real
Lightning checkpoint of a tiny to_hetero GATv2 segger model (segger main architecture, names
`model.<PyG name>`) made as segger main makes them: `LitSegger(model)` with save_hyperparameters(),
so the whole torch.fx model is pickled in `hyper_parameters`; `model.expected.safetensors` holds its
state_dict.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from torch_geometric.data import HeteroData

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "pt")
DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    """A plain safetensors writer (the format is 8-byte header length, JSON header, raw data)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def transposed(t):
    """The same values stored column-major, as segger's pos tensors are (stride (1, N))."""
    return t.t().contiguous().t()


def knn_edges(n, k, g):
    """A kNN-like graph with self-loops first, as segger's: every node is its own first neighbour."""
    src, dst = [], []
    for i in range(n):
        others = torch.randperm(n, generator=g)[: k - 1].tolist()
        for j in [i] + [o for o in others if o != i][: k - 1]:
            src.append(j)
            dst.append(i)
    return torch.tensor([src, dst], dtype=torch.long)


def make_tile(n_tx, n_bd, seed, *, labels="2d", belongs=True, nan_bd=False, embedding=False, ids=None):
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["tx"].id = torch.arange(1000, 1000 + n_tx, dtype=torch.long) if ids is None else ids[0]
    d["tx"].pos = transposed(torch.rand(n_tx, 3, generator=g) * 60)
    if embedding:
        x = torch.randn(n_tx, 5, generator=g)
        x[1, 2] = float("nan")
        x[2, 0] = float("inf")
        x[3, 4] = float("-inf")
        d["tx"].x = x
    else:
        d["tx"].x = torch.randint(0, 20, (n_tx,), generator=g)
    d["bd"].id = np.array([f"cell{i:03d}-1" for i in range(n_bd)] if ids is None else ids[1], dtype=object)
    d["bd"].pos = transposed(torch.rand(n_bd, 2, generator=g) * 60)
    if nan_bd:  # segger main since May 2025: one all-NaN row per polygon vertex (13 here, as in real tiles)
        d["bd"].x = transposed(torch.full((13 * n_bd, 4), float("nan")))
    else:
        d["bd"].x = torch.rand(n_bd, 4, generator=g)
    nn = knn_edges(n_tx, 3, g)
    d["tx", "neighbors", "tx"].edge_index = nn
    d["tx", "neighbors", "bd"].edge_index = torch.stack([nn[0], nn[1] % max(n_bd, 1)])
    if belongs:
        nuclear = torch.arange(0, n_tx, 2)
        b = torch.stack([nuclear, torch.randint(0, n_bd, (len(nuclear),), generator=g)])
        d["tx", "belongs", "bd"].edge_index = b
        if labels == "2d":
            neg = torch.stack([nuclear[:3], (b[1, :3] + 1) % n_bd])
            d["tx", "belongs", "bd"].edge_label_index = torch.cat([b, neg], 1)
            d["tx", "belongs", "bd"].edge_label = torch.cat([torch.ones(b.shape[1]), torch.zeros(3)])
        elif labels == "1d":  # a single surviving label pair, kept 1-D by segger
            d["tx", "belongs", "bd"].edge_label_index = b[:, 0].clone()
            d["tx", "belongs", "bd"].edge_label = torch.ones(1)
    else:
        d["tx", "belongs", "bd"].edge_index = torch.empty(2, 0, dtype=torch.long)
    return d


def boundary_ids(ids):
    """bd.id of the segger-tile v2 contract: U8 [N, W], UTF-8 rows zero-padded to the longest (W >= 1)."""
    raw = [s.encode("utf-8") for s in ids]
    w = max([1] + [len(b) for b in raw])
    return torch.tensor([list(b) + [0] * (w - len(b)) for b in raw], dtype=torch.uint8).reshape(len(raw), w)


def expected(d):
    e = {"tx.x": d["tx"].x, "tx.pos": d["tx"].pos}
    bx = d["bd"].x
    n_bd = d["bd"].num_nodes
    e["bd.x"] = torch.zeros(n_bd, bx.shape[1]) if bx.shape[0] != n_bd else bx
    e["bd.pos"] = d["bd"].pos
    e["tx__neighbors__tx.edge_index"] = d["tx", "neighbors", "tx"].edge_index
    s = d["tx", "belongs", "bd"]
    e["tx__belongs__bd.edge_index"] = s.edge_index
    if "edge_label_index" in s:
        e["tx__belongs__bd.edge_label_index"] = s.edge_label_index
        e["tx__belongs__bd.edge_label"] = s.edge_label
    e["tx.id"] = d["tx"].id
    e["bd.id"] = boundary_ids(list(d["bd"].id))
    return e


def same_tile(path, d):
    """Whether the .pt at path holds the same tensors and ids as d."""
    if not os.path.exists(path):
        return False
    old = torch.load(path, weights_only=False)
    for store in ("tx", "bd"):
        if set(old[store].keys()) != set(d[store].keys()):
            return False
        for k, v in d[store].items():
            w = old[store][k]
            if isinstance(v, torch.Tensor):
                if not (isinstance(w, torch.Tensor) and v.dtype == w.dtype and v.shape == w.shape
                        and torch.equal(torch.nan_to_num(v), torch.nan_to_num(w))):
                    return False
            elif list(v) != list(w):
                return False
    for et in d.edge_types:
        for k, v in d[et].items():
            if k not in old[et] or not torch.equal(v, old[et][k]):
                return False
    return set(old.edge_types) == set(d.edge_types)


def make_checkpoint(path, tile):
    import lightning as L
    from torch_geometric.nn import GATv2Conv, Linear, to_hetero

    class Segger(torch.nn.Module):  # segger_dev main: no residual linears, no L2 normalization
        def __init__(self, num_tx_tokens=20, init_emb=4, hidden=3, out=2, heads=2, mid=1):
            super().__init__()
            self.tx_embedding = torch.nn.Embedding(num_tx_tokens, init_emb)
            self.lin0 = Linear(-1, init_emb, bias=False)
            self.conv_first = GATv2Conv((-1, -1), hidden, heads=heads, add_self_loops=False)
            self.conv_mid_layers = torch.nn.ModuleList(
                [GATv2Conv((-1, -1), hidden, heads=heads, add_self_loops=False) for _ in range(mid)])
            self.conv_last = GATv2Conv((-1, -1), out, heads=heads, add_self_loops=False)

        def forward(self, x, edge_index):
            x = torch.nan_to_num(x, nan=0)
            is_one_dim = (x.ndim == 1) * 1
            x = x[:, None]
            x = self.tx_embedding(((x.sum(1) * is_one_dim).int())) * is_one_dim + self.lin0(x.float()) * (1 - is_one_dim)
            x = self.conv_first(x, edge_index).relu()
            for conv in self.conv_mid_layers:
                x = conv(x, edge_index).relu()
            return self.conv_last(x, edge_index)

    class LitSegger(L.LightningModule):  # as segger main: save_hyperparameters() pickles the whole model
        def __init__(self, model, learning_rate=1e-3):
            super().__init__()
            self.model = model
            self.save_hyperparameters()

        def training_step(self, batch, _):
            z = self.model(batch.x_dict, batch.edge_index_dict)
            s = batch["tx", "belongs", "bd"]
            logits = (z["tx"][s.edge_label_index[0]] * z["bd"][s.edge_label_index[1]]).sum(-1)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, s.edge_label)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=1e-4)

    torch.manual_seed(0)
    t = HeteroData()
    t["tx"].x = tile["tx"].x
    t["bd"].x = tile["bd"].x
    for et in [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")]:
        for k, v in tile[et].items():
            t[et][k] = v
    meta = (["tx", "bd"], [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")])
    model = to_hetero(Segger(), metadata=meta, aggr="sum")
    with torch.no_grad():
        model(t.x_dict, t.edge_index_dict)  # materialize the lazy layers
    lit = LitSegger(model)
    loader = torch.utils.data.DataLoader([t], batch_size=None, collate_fn=lambda b: b)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir="/tmp/make_pt_fixtures")
    trainer.fit(lit, loader)
    trainer.save_checkpoint(path)
    return lit.state_dict()


def main():
    tiles_only = "--tiles-only" in sys.argv[1:]
    os.makedirs(OUT, exist_ok=True)
    xenium_tx = torch.tensor([282063387231058 + 7919 * i * i for i in range(9)], dtype=torch.long)
    xenium_tx[4] = 2**62 + 12345                     # above 2^53: exact only as int64
    xenium_bd = ["cpikcgfm-1", "cpikgbka-1", "zellkern-\u00e9\u00e8-1"]
    tiles = {
        "tile_basic": make_tile(12, 3, 1),
        "tile_label_1d": make_tile(8, 2, 2, labels="1d"),
        "tile_no_belongs": make_tile(7, 2, 3, belongs=False),
        "tile_nan_bd": make_tile(10, 3, 4, nan_bd=True),
        "tile_embedding": make_tile(6, 2, 5, embedding=True),
        "tile_xenium_ids": make_tile(9, 3, 6, ids=(xenium_tx, xenium_bd)),
    }
    for name, d in tiles.items():
        path = os.path.join(OUT, name + ".pt")
        if not same_tile(path, d):
            torch.save(d, path)
        meta = {"format": "segger-tile", "version": "2", "source": name + ".pt",
                "bd.id": json.dumps(list(d["bd"].id))}
        write_safetensors(os.path.join(OUT, name + ".expected.safetensors"), expected(d), meta)
    # The same tile pickled with protocol 4 (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, ...).
    path = os.path.join(OUT, "tile_basic_protocol4.pt")
    if not same_tile(path, tiles["tile_basic"]):
        torch.save(tiles["tile_basic"], path, pickle_protocol=4)
    if not tiles_only:
        sd = make_checkpoint(os.path.join(OUT, "model.ckpt"), tiles["tile_basic"])
        write_safetensors(os.path.join(OUT, "model.expected.safetensors"),
                          {k: v.detach() for k, v in sd.items()}, {"source": "model.ckpt"})
    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):8d}  {f}")


if __name__ == "__main__":
    sys.exit(main())
