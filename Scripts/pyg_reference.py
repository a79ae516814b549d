#!/usr/bin/env python3
"""PyTorch Geometric reference for segger-train: segger's own model, trained on CPU, timed.

What a user would otherwise run: segger's GATv2 model built with PyG (`GATv2Conv` per edge type via
`to_hetero`, heads concatenated, `add_self_loops=False`), BCE-with-logits on the label pairs, AdamW
(lr 1e-4, weight decay 1e-4) after clipping to global norm 1.0 -- the semantics of docs/model-and-training.md -- on
segger-tile v1 safetensors files (docs/tile-format.md), collated B tiles per step as PyG's DataLoader does
(`Batch.from_data_list`). It prints ONE JSON object with the keys of `segger-train bench` where they apply.

Getting torch and PyG (this script installs nothing; CPU only, any recent version):
    python3 -m venv /tmp/ptvenv
    /tmp/ptvenv/bin/pip install torch torch_geometric numpy
(The default torch wheel from PyPI is large because it bundles CUDA; the CPU wheel index
https://download.pytorch.org/whl/cpu gives a smaller one where reachable.) Then run it with that python:
    /tmp/ptvenv/bin/python Scripts/pyg_reference.py --tiles bench-data/tiles-5000 --batch 1 --steps 20
    /tmp/ptvenv/bin/python Scripts/pyg_reference.py --tiles DIR --ddp 2          # 2 processes, gloo DDP
    /tmp/ptvenv/bin/python Scripts/pyg_reference.py --check-golden /path/to/golden  # is it segger's model?
Golden files (PyG's float64 numbers for one training step, what the tests compare against; the exact
commands that made the repository's own are in Tests/Fixtures/golden/README.md):
    python Scripts/pyg_reference.py --make-tiles DIR/tiles --count 2 --tx_per_tile 40 [--embedding_dim 6]
    python Scripts/pyg_reference.py --write-golden DIR [model flags] --seed 5    # both architectures
`Scripts/bench --pyg [PYTHON]` runs it next to segger-train with the same tiles, config, batch and threads.

What is timed, per step (after --warmup untimed steps; --steps timed): collating the step's B tiles
(already decoded in memory) into one batch, forward, loss, backward (with DDP: its gradient all-reduce),
clipping and the AdamW update. Tile order: a seeded shuffle, global batch = B x processes, the last partial
batch dropped; process r takes tiles [r*B, (r+1)*B) of each global batch (as DistributedSampler does).
With --ddp N each step's time is the maximum over the processes (as segger-train's bench reports).

Loss: by default only the label-pair dots s_l = <z_tx[i_l], z_bd[j_l]> (what segger-train computes);
`--dense` mirrors segger's LitSegger instead: the dense N_tx x N_bd matrix z_tx @ z_bd^T, then gathered at
the label pairs. The JSON says which one (`loss_mode`). With DDP each process's loss is the mean over its
own label pairs and DDP averages the gradients (Lightning DDP's semantics); gradients travel in fp32
unless --ddp_fp16 (DDP's fp16_compress_hook, like segger-train's default fp16 exchange).

Flags accept the spelling of `segger-train bench` (--num_tx_tokens, --init_emb, --hidden_channels,
--out_channels, --heads, --mid_layers, --aggr, --no-residual, --no-l2-normalize, --optimizer, --lr,
--weight_decay, --grad_clip, --num_threads, --batch, --steps, --warmup); segger-train-only flags (such as
--grad_compression) are ignored with a note on stderr.
"""
import argparse
import json
import math
import os
import random
import resource
import socket
import struct
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

# ----------------------------------------------------------------------------------------------------
# safetensors, read with struct + json + numpy (no dependency on the safetensors package)

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict) of one safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, t in header.items():
        if t["dtype"] == "BF16":
            a, b = t["data_offsets"]
            u16 = np.frombuffer(raw[base + a:base + b], dtype="<u2").astype(np.uint32) << 16
            out[name] = u16.view(np.float32).reshape(t["shape"])
            continue
        dt = np.dtype(_DTYPES[t["dtype"]]).newbyteorder("<")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=dt).reshape(t["shape"]).copy()
    return out, meta


def list_tiles(directory):
    """Tile files of a directory, sorted by name (the segger-tile v1 contract)."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not names:
        raise SystemExit(f"error: no *.safetensors tiles in {directory}")
    return [os.path.join(directory, n) for n in names]


# ----------------------------------------------------------------------------------------------------
# Tiles as PyG HeteroData

def load_tile(path, torch, HeteroData, dtype):
    """One segger-tile v1 file as a HeteroData (features nan_to_num'ed, 1-D label index made [2, 1])."""
    t, _ = read_safetensors(path)
    d = HeteroData()
    tx = torch.from_numpy(t["tx.x"])
    if tx.is_floating_point():
        tx = torch.nan_to_num(tx.to(dtype))
    d["tx"].x = tx
    d["bd"].x = torch.nan_to_num(torch.from_numpy(t["bd.x"]).to(dtype))
    d["tx", "neighbors", "tx"].edge_index = torch.from_numpy(t["tx__neighbors__tx.edge_index"]).reshape(2, -1)
    b = d["tx", "belongs", "bd"]
    b.edge_index = torch.from_numpy(t["tx__belongs__bd.edge_index"]).reshape(2, -1)
    if "tx__belongs__bd.edge_label_index" in t:
        b.edge_label_index = torch.from_numpy(t["tx__belongs__bd.edge_label_index"]).reshape(2, -1)
        b.edge_label = torch.from_numpy(t["tx__belongs__bd.edge_label"]).to(dtype).reshape(-1)
    else:
        b.edge_label_index = torch.zeros(2, 0, dtype=torch.int64)
        b.edge_label = torch.zeros(0, dtype=dtype)
    return d


# ----------------------------------------------------------------------------------------------------
# The model (docs/model-and-training.md), written the way segger writes it so that to_hetero gives PyG's parameter names

NODE_TYPES = ["tx", "bd"]
EDGE_TYPES = [("tx", "belongs", "bd"), ("tx", "neighbors", "tx")]


def build_model(cfg, torch, pyg):
    """segger's model after to_hetero. cfg: num_tx_tokens, init_emb, hidden_channels, out_channels, heads,
    mid_layers, residual, l2_normalize, aggr. Lazy shapes: call once on a batch before use."""
    from torch.nn import Embedding
    from torch_geometric.nn import GATv2Conv, Linear, to_hetero
    import torch.nn.functional as F

    H, Ch, Co = cfg["heads"], cfg["hidden_channels"], cfg["out_channels"]
    float_dtype = cfg.get("dtype", torch.float32)            # segger: x.float(); float64 for the golden check

    class Segger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tx_embedding = Embedding(cfg["num_tx_tokens"], cfg["init_emb"])
            self.lin0 = Linear(-1, cfg["init_emb"], bias=False)
            conv = lambda c: GATv2Conv((-1, -1), c, heads=H, add_self_loops=False)
            res = lambda c: Linear(-1, c * H, weight_initializer="glorot")
            self.conv_first = conv(Ch)
            self.conv_mid_layers = torch.nn.ModuleList([conv(Ch) for _ in range(cfg["mid_layers"])])
            self.conv_last = conv(Co)
            if cfg["residual"]:
                self.lin_first = res(Ch)
                self.lin_mid_layers = torch.nn.ModuleList([res(Ch) for _ in range(cfg["mid_layers"])])
                self.lin_last = res(Co)

        def forward(self, x, edge_index):
            # Input layer, one code path for both node types (as segger does it): token ids (1-D) go
            # through the embedding, feature rows through lin0; the other branch is multiplied by 0
            # (hence the dead tensors tx_embedding.bd and lin0.tx).
            x = torch.nan_to_num(x, nan=0.0)
            one_dim = (x.ndim == 1) * 1
            x = x[:, None]
            x = self.tx_embedding((x.sum(-1) * one_dim).int()) * one_dim + self.lin0(x.to(float_dtype)) * (1 - one_dim)
            x = x.flatten(1)                                  # [N, init_emb]
            x = x.relu()
            convs = [self.conv_first] + list(self.conv_mid_layers)
            lins = ([self.lin_first] + list(self.lin_mid_layers)) if cfg["residual"] else [None] * len(convs)
            for conv, lin in zip(convs, lins):
                h = conv(x, edge_index)
                if lin is not None:
                    h = h + lin(x)
                x = h.relu()
            z = self.conv_last(x, edge_index)
            if cfg["residual"]:
                z = z + self.lin_last(x)
            if cfg["l2_normalize"]:
                z = F.normalize(z, p=2.0, dim=-1, eps=1e-12)
            return z                                          # [N, H*Co]

    return to_hetero(Segger(), (NODE_TYPES, EDGE_TYPES), aggr=cfg["aggr"])


def label_logits(z, batch, dense, torch):
    """s_l = <z_tx[i_l], z_bd[j_l]> for every label pair (dense: via the full N_tx x N_bd matrix)."""
    store = batch["tx", "belongs", "bd"]
    idx = store.edge_label_index
    if dense:
        return torch.matmul(z["tx"], z["bd"].t())[idx[0], idx[1]]
    return (z["tx"][idx[0]] * z["bd"][idx[1]]).sum(-1)


def make_optimizer(params, opt, torch):
    if opt["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=opt["lr"], betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=opt["weight_decay"])
    return torch.optim.Adam(params, lr=opt["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=opt["weight_decay"])


# ----------------------------------------------------------------------------------------------------
# Golden check: one step against PyG's float64 numbers (a golden directory: Tests/Fixtures/golden/*)

def check_golden(directory, torch, pyg):
    """Rebuilds the golden step from the golden weights and tiles, in float64 and float32, and compares
    loss, logits, embeddings, gradients, the clip norm and the weights after one step. Returns 0 on pass."""
    from torch_geometric.data import Batch, HeteroData
    ok = True
    report = {}
    for variant in ("main", "documented"):
        gpath = os.path.join(directory, f"golden_{variant}.f64.safetensors")
        wpath = os.path.join(directory, f"weights_{variant}.safetensors")
        if not os.path.exists(gpath):
            continue
        golden, meta = read_safetensors(gpath)
        weights, _ = read_safetensors(wpath)
        c = json.loads(meta["config"])
        o = json.loads(meta["optimizer"])
        tiles = [os.path.join(directory, "tiles", n) for n in json.loads(meta["tiles"])]
        cfg = dict(num_tx_tokens=c["num_tx_tokens"], init_emb=c["init_emb"], hidden_channels=c["hidden_channels"],
                   out_channels=c["out_channels"], heads=c["heads"], mid_layers=c["num_mid_layers"],
                   residual=(c["variant"] in ("documented", "residual")), l2_normalize=bool(c["l2norm"]), aggr="sum")
        cfg_of = lambda dtype: dict(cfg, dtype=dtype)
        opt = dict(optimizer=o["name"], lr=o["lr"], weight_decay=o["weight_decay"])
        for dtype, tol_f, tol_step in ((torch.float64, 1e-6, 1e-6), (torch.float32, 1e-4, 5e-4)):
            torch.manual_seed(0)
            batch = Batch.from_data_list([load_tile(p, torch, HeteroData, dtype) for p in tiles])
            model = build_model(cfg_of(dtype), torch, pyg)
            model.to(dtype)
            with torch.no_grad():
                model(batch.x_dict, batch.edge_index_dict)    # materialize lazy shapes
            sd = model.state_dict()
            missing = set(sd) ^ set(weights)
            if missing:
                raise SystemExit(f"error: parameter names differ from the golden weights: {sorted(missing)}")
            model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            model.to(dtype)
            errs = {}

            def rel(name, got, want, floor=0.0):
                want = np.asarray(want, dtype=np.float64)
                got = got.detach().to(torch.float64).numpy().reshape(want.shape)
                scale = max(np.abs(want).max() if want.size else 0.0, floor)
                e = float(np.abs(got - want).max() / scale) if want.size and scale > 0 else 0.0
                errs[name] = max(errs.get(name, 0.0), e)

            # the collated batch is PyG's disjoint union
            for key, got in (("input.tx__neighbors__tx.edge_index", batch["tx", "neighbors", "tx"].edge_index),
                             ("input.tx__belongs__bd.edge_index", batch["tx", "belongs", "bd"].edge_index),
                             ("input.tx__belongs__bd.edge_label_index", batch["tx", "belongs", "bd"].edge_label_index),
                             ("input.tx.x", batch["tx"].x)):
                if not np.array_equal(got.numpy(), golden[key]):
                    raise SystemExit(f"error: collated {key} differs from the golden batch")
            z = model(batch.x_dict, batch.edge_index_dict)
            s = label_logits(z, batch, False, torch)
            y = batch["tx", "belongs", "bd"].edge_label
            loss = torch.nn.functional.binary_cross_entropy_with_logits(s, y)
            loss.backward()
            rel("loss", loss, golden["loss"])
            rel("logits", s, golden["logits"])
            rel("out", z["tx"], golden["out.tx"])
            rel("out", z["bd"], golden["out.bd"])
            for name, p in model.named_parameters():
                rel("grad", p.grad, golden["grad." + name])
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o["clip"])
            rel("clip.total_norm", norm, golden["clip.total_norm"])
            optim = make_optimizer(model.parameters(), opt, torch)
            optim.step()
            for name, p in model.named_parameters():
                rel("step1", p, golden["step1." + name], floor=0.1 if dtype == torch.float32 else 0.0)
            passed = all(e <= (tol_step if k == "step1" else tol_f) for k, e in errs.items())
            ok &= passed
            tag = f"{variant}.{'f64' if dtype == torch.float64 else 'f32'}"
            report[tag] = {"pass": passed, "loss": float(loss), "golden_loss": float(golden["loss"][0]),
                           "max_rel_err": {k: float(f"{e:.3g}") for k, e in errs.items()}}
    if not report:
        raise SystemExit(f"error: no golden_*.f64.safetensors in {directory}")
    print(json.dumps({"golden_check": "pass" if ok else "FAIL", "torch_version": torch.__version__,
                      "torch_geometric_version": pyg.__version__, "results": report}, sort_keys=True))
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------------------
# Golden files: small tiles, and PyG's float64 numbers for one step on them (the layout check_golden reads)

_NAMES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata):
    """Writes [(name, numpy array)] as safetensors (little-endian, header padded to 8 bytes), atomically."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(tmp, path)


def make_tiles(directory, args):
    """Small segger-tile v1 tiles with what real tiles have: a nucleus with no transcript (a bd without
    incoming edges), a transcript without incoming kNN edge, negatives paired with wrong nuclei, and one
    NaN feature (bd.x of the first tile; in embedding mode also tx.x), which readers replace by 0."""
    os.makedirs(directory, exist_ok=True)
    rows = []
    for t in range(args.count):
        rng = np.random.default_rng([args.seed, t])
        side, cells, n = 24.0, 3, args.tx_per_tile
        centers = rng.uniform(5, side - 5, size=(cells, 2))
        bd_pos = np.vstack([centers, rng.uniform(0, side, size=(1, 2))])          # the last nucleus stays empty
        cell = rng.integers(-1, cells, size=n)                                      # -1: background
        pos = np.where(cell[:, None] >= 0, centers[np.maximum(cell, 0)] + rng.normal(0, 3.0, size=(n, 2)),
                       rng.uniform(0, side, size=(n, 2)))
        nuclear = (cell >= 0) & (np.linalg.norm(pos - centers[np.maximum(cell, 0)], axis=1) < 2.5)
        program = rng.random(n) < 0.7
        tokens = np.where(program & (cell >= 0), (np.maximum(cell, 0) * 10 + rng.integers(0, 10, size=n)) % args.num_tx_tokens,
                          rng.integers(0, args.num_tx_tokens, size=n)).astype(np.int64)
        # kNN: the k nearest within 5 um, self first, edges neighbour -> transcript; the last transcript
        # gets no incoming edge at all.
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
        src, dst = [], []
        for i in range(n - 1):
            for j in np.argsort(d[i], kind="stable")[:3]:
                if d[i, j] <= 5.0:
                    src.append(j); dst.append(i)
        nn = np.array([src, dst], dtype=np.int64)
        b_src = np.nonzero(nuclear)[0]
        belongs = np.array([b_src, cell[b_src]], dtype=np.int64)
        neg_src = b_src[rng.random(len(b_src)) < 0.6]
        neg_dst = (cell[neg_src] + rng.integers(1, cells + 1, size=len(neg_src))) % (cells + 1)
        label_index = np.hstack([belongs, np.array([neg_src, neg_dst], dtype=np.int64)])
        label = np.concatenate([np.ones(belongs.shape[1]), np.zeros(len(neg_src))]).astype(np.float32)
        bd_x = rng.uniform(0.2, 2.0, size=(cells + 1, 4)).astype(np.float32)
        if t == 0:
            bd_x[0, 2] = np.nan
        if args.embedding_dim:
            table = rng.normal(0, 1, size=(args.num_tx_tokens, args.embedding_dim))
            tx_x = (table[tokens] + rng.normal(0, 0.1, size=(n, args.embedding_dim))).astype(np.float32)
            if t == 0:
                tx_x[1, 0] = np.nan
        else:
            tx_x = tokens
        name = f"tile_{t:05d}.safetensors"
        write_safetensors(os.path.join(directory, name), [
            ("tx.x", tx_x), ("tx.pos", pos.astype(np.float32)), ("bd.x", bd_x), ("bd.pos", bd_pos.astype(np.float32)),
            ("tx__neighbors__tx.edge_index", nn), ("tx__belongs__bd.edge_index", belongs),
            ("tx__belongs__bd.edge_label_index", label_index), ("tx__belongs__bd.edge_label", label)],
            {"format": "segger-tile", "version": "1"})
        rows.append({"file": name, "n_tx": n, "n_bd": cells + 1, "e_nn": nn.shape[1], "e_b": belongs.shape[1],
                     "n_label": label_index.shape[1], "n_neg": int(len(neg_src))})
    manifest = {"format": "segger-tile", "version": "1", "generator": "Scripts/pyg_reference.py --make-tiles",
                "args": {"count": args.count, "tx_per_tile": args.tx_per_tile, "num_tx_tokens": args.num_tx_tokens,
                         "embedding_dim": args.embedding_dim, "seed": args.seed}, "tiles": rows}
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        f.write(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({"made_tiles": directory, "tiles": rows}))
    return 0


def golden_step(directory, tiles, variant, args, torch, pyg, weights=None):
    """One float64 step of `variant` on the collated `tiles`: returns ({name: array} in the golden layout,
    float32 starting weights). The weights are PyG's initialization under --seed with the conv biases
    (zero in PyG) drawn from U(-0.1, 0.1), so that a forward that forgot them shows; or `weights`."""
    from torch_geometric.data import Batch, HeteroData
    from torch_geometric.nn import GATv2Conv
    residual = variant == "documented"
    cfg = dict(model_config(args), residual=residual, l2_normalize=residual, dtype=torch.float64)
    batch = Batch.from_data_list([load_tile(p, torch, HeteroData, torch.float64) for p in tiles])
    torch.manual_seed(args.seed)
    model = build_model(cfg, torch, pyg)
    model.to(torch.float64)
    with torch.no_grad():
        model(batch.x_dict, batch.edge_index_dict)                                  # materialize lazy shapes
        if weights is None:
            g = torch.Generator().manual_seed(args.seed + 1)
            for name, p in model.named_parameters():
                if name.startswith("conv_") and name.endswith(".bias") and ".lin_" not in name:
                    p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) * 0.2 - 0.1)
            weights = {k: v.detach().to(torch.float32).numpy().copy() for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v).to(torch.float64) for k, v in weights.items()})
    token_mode = not batch["tx"].x.is_floating_point()
    dead = {"tx_embedding.bd", "lin0.tx" if token_mode else "tx_embedding.tx"}
    out = {}

    def keep(name, flatten=True):
        def hook(module, inputs, output):
            y = output[0] if isinstance(output, tuple) else output
            y = y.detach()
            out[name] = (y.flatten(1) if flatten and y.dim() > 2 else y).numpy().copy()
        return hook
    hooks = []
    for name, m in model.named_modules():
        if name.count(".") == 1 and name.startswith(("tx_embedding.", "lin0.", "lin_first.", "lin_last.")) and name not in dead:
            hooks.append(m.register_forward_hook(keep("act." + name)))
        elif name.startswith("lin_mid_layers.") and name.count(".") == 2:
            hooks.append(m.register_forward_hook(keep("act." + name)))
        elif isinstance(m, GATv2Conv):
            hooks.append(m.register_forward_hook(keep("act." + name)))
            hooks.append(m.register_edge_update_forward_hook(keep("alpha." + name)))
            hooks.append(m.lin_l.register_forward_hook(keep(f"act.{name}.lin_l")))
            hooks.append(m.lin_r.register_forward_hook(keep(f"act.{name}.lin_r")))
            hooks.append(m.aggr_module.register_forward_hook(keep(f"act.{name}.aggr_module", flatten=False)))
    z = model(batch.x_dict, batch.edge_index_dict)
    for h in hooks:
        h.remove()
    s = label_logits(z, batch, False, torch)
    b = batch["tx", "belongs", "bd"]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(s, b.edge_label)
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}     # before clipping
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    make_optimizer(model.parameters(), optimizer_config(args), torch).step()
    tensors = [
        ("input.tx.x", batch["tx"].x.numpy()), ("input.bd.x", batch["bd"].x.numpy()),
        ("input.tx__neighbors__tx.edge_index", batch["tx", "neighbors", "tx"].edge_index.numpy()),
        ("input.tx__belongs__bd.edge_index", b.edge_index.numpy()),
        ("input.tx__belongs__bd.edge_label_index", b.edge_label_index.numpy()),
        ("input.tx__belongs__bd.edge_label", b.edge_label.numpy()),
    ] + sorted(out.items()) + [
        ("out.tx", z["tx"].detach().numpy()), ("out.bd", z["bd"].detach().numpy()),
        ("logits", s.detach().numpy()), ("loss", loss.detach().reshape(1).numpy()),
        ("clip.total_norm", norm.detach().reshape(1).numpy()),
    ] + [("param." + k, v.astype(np.float64)) for k, v in sorted(weights.items())] \
      + [("grad." + k, v) for k, v in sorted(grads.items())] \
      + [("step1." + n, p.detach().numpy().copy()) for n, p in sorted(model.named_parameters())]
    return tensors, weights


def write_golden(directory, args, torch, pyg):
    """Writes weights_<variant>.safetensors (float32) and golden_<variant>.f64.safetensors for both
    architectures from the first --batch tiles of DIR/tiles (or with --golden-weights DIR2, from DIR2's
    weights: reproduces another golden directory)."""
    tiles = list_tiles(os.path.join(directory, "tiles"))[:args.batch]
    names = [os.path.basename(p) for p in tiles]
    first, _ = read_safetensors(tiles[0])
    report = {}
    for variant in ("main", "documented"):
        given = None
        if args.golden_weights:
            given, _ = read_safetensors(os.path.join(args.golden_weights, f"weights_{variant}.safetensors"))
        tensors, weights = golden_step(directory, tiles, variant, args, torch, pyg, given)
        config = {"num_tx_tokens": args.num_tx_tokens, "init_emb": args.init_emb, "hidden_channels": args.hidden_channels,
                  "out_channels": args.out_channels, "heads": args.heads, "num_mid_layers": args.mid_layers,
                  "variant": variant, "l2norm": variant == "documented"}
        optimizer = {"name": args.optimizer, "lr": args.lr, "weight_decay": args.weight_decay, "clip": args.grad_clip,
                     "betas": [0.9, 0.999], "eps": 1e-8}
        init = (f"weights_{variant}.safetensors of {args.golden_weights}" if given is not None else
                f"PyG initialization, torch.manual_seed({args.seed}); conv biases U(-0.1, 0.1), seed {args.seed + 1}")
        meta = {"format": "segger-golden", "version": "1", "dtype": "f64", "tiles": json.dumps(names),
                "config": json.dumps(config), "optimizer": json.dumps(optimizer), "init": init,
                "torch": torch.__version__, "torch_geometric": pyg.__version__}
        write_safetensors(os.path.join(directory, f"golden_{variant}.f64.safetensors"),
                          [(k, np.asarray(v, dtype=np.int64 if v.dtype.kind == "i" else np.float64)) for k, v in tensors], meta)
        if given is None:
            write_safetensors(os.path.join(directory, f"weights_{variant}.safetensors"), sorted(weights.items()),
                              {"format": "segger-weights", "config": json.dumps(config), "f_bd": str(first["bd.x"].shape[1])})
        report[variant] = {"tensors": len(tensors), "loss": float(dict(tensors)["loss"][0])}
    print(json.dumps({"wrote_golden": directory, "tiles": names, "results": report, "torch_version": torch.__version__,
                      "torch_geometric_version": pyg.__version__}, sort_keys=True))
    return 0


# ----------------------------------------------------------------------------------------------------
# Benchmark

def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024
    return float("nan")


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def run_rank(rank, world, args, port, result_path):
    """One process of the benchmark (world == 1: no torch.distributed)."""
    import torch
    import torch_geometric as pyg
    from torch_geometric.data import Batch, HeteroData
    torch.set_num_threads(args.num_threads)
    torch.set_num_interop_threads(1)
    if world > 1:
        import torch.distributed as dist
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    rss_start = rss_mb("VmRSS")
    paths = list_tiles(args.tiles)
    tiles = [load_tile(p, torch, HeteroData, torch.float32) for p in paths]
    cfg = model_config(args)
    torch.manual_seed(args.seed)
    model = build_model(cfg, torch, pyg)
    with torch.no_grad():
        model(tiles[0].x_dict, tiles[0].edge_index_dict)     # materialize lazy shapes (same on every rank)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model)                                      # broadcasts rank 0's weights
        if args.ddp_fp16:
            from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
            net.register_comm_hook(None, default_hooks.fp16_compress_hook)
    optim = make_optimizer(net.parameters(), optimizer_config(args), torch)

    global_batch = args.batch * world
    order = list(range(len(tiles)))
    random.Random(args.seed).shuffle(order)
    nbatches = len(order) // global_batch
    if nbatches == 0:
        raise SystemExit(f"error: {len(tiles)} tiles are fewer than one global batch of {global_batch}")
    times, collate = [], []
    loss_value = float("nan")
    for i in range(args.warmup + args.steps):
        k = i % nbatches
        mine = order[k * global_batch + rank * args.batch:k * global_batch + (rank + 1) * args.batch]
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        batch = Batch.from_data_list([tiles[j] for j in mine])
        t1 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        z = net(batch.x_dict, batch.edge_index_dict)
        s = label_logits(z, batch, args.dense, torch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(s, batch["tx", "belongs", "bd"].edge_label)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
        optim.step()
        t2 = time.perf_counter()
        m = [t2 - t0, t1 - t0]
        if world > 1:
            mt = torch.tensor(m, dtype=torch.float64)
            dist.all_reduce(mt, op=dist.ReduceOp.MAX)
            m = mt.tolist()
        if i >= args.warmup:
            times.append(m[0])
            collate.append(m[1])
        loss_value = float(loss)
    peak = [rss_mb("VmHWM"), rss_mb("VmRSS") - rss_start]
    if world > 1:
        pt = torch.tensor(peak, dtype=torch.float64)
        dist.all_reduce(pt, op=dist.ReduceOp.MAX)
        peak = pt.tolist()
    if rank == 0:
        sample = tiles[:8]
        n = len(sample)
        tx = sum(t["tx"].num_nodes for t in sample) / n
        edges = sum(t["tx", "neighbors", "tx"].edge_index.shape[1] + t["tx", "belongs", "bd"].edge_index.shape[1]
                    for t in sample) / n
        labels = sum(t["tx", "belongs", "bd"].edge_label.numel() for t in sample) / n
        st = sorted(times)
        med = percentile(st, 0.5)
        tiles_per_step = args.batch * world
        report = {
            "implementation": "pytorch_geometric",
            "ranks": world,
            "batch_per_rank": args.batch,
            "steps": args.steps,
            "architecture": "documented" if cfg["residual"] else "segger-main",
            "l2_normalize": cfg["l2_normalize"],
            "loss_mode": "dense" if args.dense else "label_pairs",
            "ms_per_step_median": med * 1e3,
            "ms_per_step_p10": percentile(st, 0.1) * 1e3,
            "ms_per_step_p90": percentile(st, 0.9) * 1e3,
            "collate_ms_per_step_median": percentile(sorted(collate), 0.5) * 1e3,
            "tiles_per_s": tiles_per_step / med,
            "nodes_per_s": tiles_per_step * tx / med,
            "edges_per_s": tiles_per_step * edges / med,
            "peak_rssmb": peak[0],
            "rss_growth_mb": peak[1],
            "rss_after_import_mb": rss_start,
            "mean_tile_tx": tx,
            "mean_tile_edges": edges,
            "mean_tile_labels": labels,
            "threads": args.num_threads,
            "ddp_backend": ("gloo" + (" fp16" if args.ddp_fp16 else " fp32")) if world > 1 else "none",
            "final_loss": loss_value,
            "torch_version": torch.__version__,
            "torch_geometric_version": pyg.__version__,
            "python_version": sys.version.split()[0],
        }
        text = json.dumps(report, sort_keys=True)
        if result_path:
            with open(result_path, "w") as f:
                f.write(text)
        else:
            print(text, flush=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def _spawned(rank, world, args, port, result_path):
    run_rank(rank, world, args, port, result_path)


def model_config(args):
    return dict(num_tx_tokens=args.num_tx_tokens, init_emb=args.init_emb, hidden_channels=args.hidden_channels,
                out_channels=args.out_channels, heads=args.heads, mid_layers=args.mid_layers,
                residual=not args.no_residual, l2_normalize=not args.no_l2_normalize, aggr=args.aggr)


def optimizer_config(args):
    return dict(optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--tiles", help="tile directory (segger-tile v1 *.safetensors)")
    p.add_argument("--check-golden", "--check_golden", dest="check_golden", metavar="DIR",
                   help="compare one step with PyG's float64 golden files in DIR and exit")
    p.add_argument("--make-tiles", "--make_tiles", dest="make_tiles", metavar="DIR",
                   help="write --count small tiles for golden files into DIR and exit")
    p.add_argument("--count", type=int, default=2, help="tiles of --make-tiles")
    p.add_argument("--tx_per_tile", type=int, default=40, help="transcripts per tile of --make-tiles")
    p.add_argument("--embedding_dim", type=int, default=0,
                   help="--make-tiles: embedding-mode tiles (tx.x float [N, C]) of this width instead of token ids")
    p.add_argument("--write-golden", "--write_golden", dest="write_golden", metavar="DIR",
                   help="write PyG's float64 step on the first --batch tiles of DIR/tiles (both architectures) into DIR and exit")
    p.add_argument("--golden-weights", "--golden_weights", dest="golden_weights", metavar="DIR",
                   help="--write-golden from DIR's weights_<variant>.safetensors instead of a fresh initialization")
    p.add_argument("--batch", type=int, default=None, help="tiles per process per step (default 1; --write-golden: 2)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--num_threads", "--threads", dest="num_threads", type=int, default=1,
                   help="torch.set_num_threads per process (default 1)")
    p.add_argument("--ddp", type=int, default=1, metavar="N", help="N processes with torch.distributed gloo DDP")
    p.add_argument("--ddp_fp16", "--ddp-fp16", dest="ddp_fp16", action="store_true",
                   help="DDP exchanges gradients in fp16 (fp16_compress_hook)")
    p.add_argument("--dense", action="store_true",
                   help="loss through the dense N_tx x N_bd matrix, as segger's LitSegger computes it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_tx_tokens", type=int, default=500)
    p.add_argument("--init_emb", type=int, default=8)
    p.add_argument("--hidden_channels", type=int, default=64)
    p.add_argument("--out_channels", type=int, default=16)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mid_layers", type=int, default=1)
    p.add_argument("--aggr", choices=["sum", "mean"], default="sum")
    p.add_argument("--no-residual", "--no_residual", dest="no_residual", action="store_true")
    p.add_argument("--no-l2-normalize", "--no_l2_normalize", dest="no_l2_normalize", action="store_true")
    p.add_argument("--optimizer", choices=["adamw", "adam"], default="adamw")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--grad_clip", type=float)
    args, unknown = p.parse_known_args(argv)
    if unknown:
        print(f"pyg_reference: ignoring flags it does not model: {' '.join(unknown)}", file=sys.stderr)
    adam = args.optimizer == "adam"
    if args.lr is None:
        args.lr = 1e-3 if adam else 1e-4
    if args.weight_decay is None:
        args.weight_decay = 0.0 if adam else 1e-4
    if args.grad_clip is None:
        args.grad_clip = 0.0 if adam else 1.0
    if args.batch is None:
        args.batch = 2 if args.write_golden else 1
    return args


def main(argv):
    args = parse(argv)
    if args.make_tiles:
        return make_tiles(args.make_tiles, args)
    if args.write_golden:
        import torch
        import torch_geometric as pyg
        torch.set_num_threads(args.num_threads)
        return write_golden(args.write_golden, args, torch, pyg)
    if args.check_golden:
        import torch
        import torch_geometric as pyg
        torch.set_num_threads(args.num_threads)
        return check_golden(args.check_golden, torch, pyg)
    if not args.tiles:
        raise SystemExit("error: give --tiles DIR (or --check-golden DIR, --write-golden DIR, --make-tiles DIR)")
    if args.ddp <= 1:
        run_rank(0, 1, args, 0, None)
        return 0
    import tempfile
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fd, result = tempfile.mkstemp(prefix="pyg-ddp-", suffix=".json")
    os.close(fd)
    try:
        mp.spawn(_spawned, args=(args.ddp, args, port, result), nprocs=args.ddp, join=True)
        with open(result) as f:
            print(f.read(), flush=True)
    finally:
        os.unlink(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
