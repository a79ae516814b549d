#!/usr/bin/env python3
"""Python reference of segger's prediction (segmentation): the ground truth for `segger-train predict`.

Assigns every transcript of a set of tiles to a cell with a trained segger model, by the algorithm pinned in
issue 15 (segger_dev's `predict_parquet.py`: `segment`, `predict_batch`, `get_similarity_scores`), on CPU:
PyTorch Geometric for the model (the builder of Scripts/pyg_reference.py, which reproduces segger's model),
scipy's cKDTree for candidates, scipy.sparse.csgraph.connected_components for the components, pyarrow for
the output. Needs torch, torch_geometric, numpy, scipy, pyarrow (see Scripts/pyg_reference.py's header).

    python Scripts/predict_reference.py --tiles DIR [DIR ...] --checkpoint FILE --out DIR \\
        [--score_cut 0.5] [--k_bd 4] [--dist_bd 10] [--k_tx 5] [--dist_tx 3] [--use_cc] [--min_bd 10] \\
        [--format parquet|csv|both] [--overwrite] [--num_threads 1] [--self_check] [--segger_code]

--tiles: directories of segger-tile v2 `*.safetensors` (with tx.pos, bd.pos, tx.id, bd.id; see
docs/tile-format.md), of segger's `*.pt` tiles (read with torch.load), or segger's dataset root (all of
{train,val,test}_tiles/processed; a root of converted {train,val,test}/ directories works too).
--checkpoint: a segger-train checkpoint (`.safetensors`, model config from its `model_config` metadata) or
a Lightning `.ckpt` written by segger (config inferred from the weights' shapes; residual linears mean the
documented architecture with L2 normalization, none mean segger main without it).

The algorithm (defaults as segger's `segment`):
 per tile, skipped when it has fewer than --min_bd boundaries (its transcripts are written unassigned,
 score 0):
  1. z = model(x, edges): final embeddings of tx and bd, the tile's own neighbors and belongs edges.
  2. Candidates: the --k_bd nearest bd.pos[:, :2] to each tx.pos[:, :2] with distance strictly below
     --dist_bd (cKDTree.query(k, distance_upper_bound), distances in float64 from the float32 positions).
  3. score = sigmoid(<z_tx, z_bd>) in float32 over the candidates, a dot of exactly 0 scoring 0 (segger sets
     it to -inf before the sigmoid); best = the maximum (0 without candidates), ties to the lowest bd row
     (segger's dense argmax); bound when best >= score_cut (compared in float32); its cell is that bd.id.
  4. --use_cc: for each transcript unbound in this tile, its --k_tx nearest transcripts (tx.pos[:, :2])
     with distance < --dist_tx, itself dropped, those also unbound in this tile; an edge (by transcript id)
     where sigmoid(<z_i, z_j>) >= score_cut (exact-0 dot: no edge).
 across tiles (a transcript id may be in several tiles):
  - per transcript id the best bound row (highest score; ties: the smallest cell id, UTF-8 order), else its
    best unbound row (highest score);
  - --use_cc: weakly connected components of all edges (ends bound elsewhere still link); each transcript
    still unbound on an edge takes its component's id `cc-<smallest transcript id of the component>`;
    one on no edge stays unassigned.
--segger_code instead follows segger_dev's code where it differs from that text (for comparison): tiles also
need >= 1000 transcripts; the tx-tx scores are cosines of the L2-normalized layer-0 embeddings (the token
embedding, no relu, no sigmoid), kept when >= the tile's median over all candidate pairs (self pairs
included) and >= score_cut; tx-tx distances use all of tx.pos (x, y, z); edges are directed and the
components strongly connected (every transcript on an edge gets one, singletons included).

Outputs in --out (written to a temporary name, then renamed; an existing output is refused unless
--overwrite): `segger_transcripts.parquet` (transcript_id int64, segger_cell_id string or null, score
float32, bound int8, x, y float32, z float32 when every tile has it, gene int32 or null in embedding mode;
sorted by transcript_id), `segger_cells.parquet` (segger_cell_id string, transcript_count int64, x, y
float32: mean of its transcripts, source "nucleus" or "component"; sorted by id), `segmentation_log.json`;
with --format csv (or both) `segger_transcripts.csv` (transcript_id, segger_cell_id, score, bound; scores
as the shortest text that reads back as the same float32) and `segger_cells.csv`. Prints one JSON line with
the counts and transcripts/s (tile rows read per second, start to written outputs, imports excluded).
--self_check recomputes the result by exhaustive search and plain union-find and stops on any difference.
"""
import argparse
import json
import os
import pickle
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyg_reference as ref  # noqa: E402  (read_safetensors, build_model, NODE_TYPES, EDGE_TYPES)

SPLITS = ("train", "val", "test")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# ----------------------------------------------------------------------------------------------------
# Tiles

def tile_files(directory):
    """Tile files of a directory (sorted by name), of its processed/ folder, or of every split of a dataset root."""
    if not os.path.isdir(directory):
        fail(f"{directory}: no such directory")
    names = sorted(n for n in os.listdir(directory)
                   if (n.endswith(".safetensors") or n.endswith(".pt")) and not n.startswith("."))
    if names:
        return [os.path.join(directory, n) for n in names]
    if os.path.isdir(os.path.join(directory, "processed")):
        return tile_files(os.path.join(directory, "processed"))
    out = []
    for split in SPLITS:
        for sub in (f"{split}_tiles", split):
            p = os.path.join(directory, sub)
            if os.path.isdir(p):
                out += tile_files(p)
                break
    if not out:
        fail(f"{directory}: holds no tiles (*.safetensors, *.pt; nor processed/ or {{train,val,test}}[_tiles]/)")
    return out


class Tile:
    """What prediction needs of one tile, as numpy arrays."""

    def __init__(self, path, tx_x, bd_x, nn, belongs, tx_pos, bd_pos, tx_id, bd_id):
        self.path, self.tx_x, self.bd_x, self.nn, self.belongs = path, tx_x, bd_x, nn, belongs
        self.tx_pos, self.bd_pos, self.tx_id, self.bd_id = tx_pos, bd_pos, tx_id, bd_id

    @property
    def n_tx(self):
        return len(self.tx_id)

    @property
    def n_bd(self):
        return len(self.bd_id)


HOW_TO_GET_IDS = ("convert segger's .pt tiles with `segger-train convert` (or read them directly), or generate "
                  "tiles with `segger-train synth`; see docs/tile-format.md")


def check_tile(t):
    for name, v, rows in (("tx.pos", t.tx_pos, t.n_tx), ("bd.pos", t.bd_pos, t.n_bd)):
        if v is None:
            fail(f"{t.path}: no '{name}': prediction needs positions ({HOW_TO_GET_IDS})")
        if v.ndim != 2 or v.shape[0] != rows or v.shape[1] not in (2, 3) or not np.isfinite(v).all():
            fail(f"{t.path}: '{name}' has shape {list(v.shape)} or non-finite values; expected finite [{rows}, 2|3]")
    if len(np.unique(t.tx_id)) != t.n_tx:
        fail(f"{t.path}: 'tx.id' repeats an id within the tile")
    if len(set(t.bd_id)) != t.n_bd:
        fail(f"{t.path}: 'bd.id' repeats an id within the tile")
    if len(t.tx_x) != t.n_tx or len(t.bd_x) != t.n_bd:
        fail(f"{t.path}: tx.x/bd.x rows differ from tx.id/bd.id rows")


def decode_bd_id(a, path):
    """bd.id U8 [N, W] (zero-padded UTF-8 rows) to strings."""
    if a.dtype != np.uint8 or a.ndim != 2:
        fail(f"{path}: 'bd.id' is {a.dtype} {list(a.shape)}, expected U8 [N_bd, W]")
    out = []
    for row in a:
        b = bytes(row).rstrip(b"\0")
        if not b or b"\0" in b:
            fail(f"{path}: 'bd.id' has an empty id or a NUL inside one")
        out.append(b.decode("utf-8"))
    return out


def read_safetensors_tile(path):
    t, meta = ref.read_safetensors(path)
    if meta.get("format", "segger-tile") != "segger-tile" or meta.get("version", "1") not in ("1", "2"):
        fail(f"{path}: not a segger-tile v1/v2 file (metadata {meta})")
    for name in ("tx.id", "bd.id"):
        if name not in t:
            fail(f"{path}: no '{name}': prediction needs transcript and cell ids ({HOW_TO_GET_IDS})")
    return Tile(path, t["tx.x"], t["bd.x"].astype(np.float32),
                t["tx__neighbors__tx.edge_index"].reshape(2, -1), t["tx__belongs__bd.edge_index"].reshape(2, -1),
                t.get("tx.pos"), t.get("bd.pos"), t["tx.id"].astype(np.int64), decode_bd_id(t["bd.id"], path))


def read_pt_tile(path, torch):
    d = torch.load(path, weights_only=False)
    tx, bd = d["tx"], d["bd"]
    if "id" not in tx or "id" not in bd:
        fail(f"{path}: no tx.id or bd.id in the HeteroData")
    n_bd = len(bd["id"])
    bd_x = bd["x"].numpy() if "x" in bd else np.zeros((n_bd, 4), np.float32)
    if bd_x.shape[0] != n_bd:           # segger main: one all-NaN row per polygon vertex, nan_to_num -> zeros
        bd_x = np.zeros((n_bd, bd_x.shape[1]), np.float32)
    if ("tx", "belongs", "bd") in d.edge_types and "edge_index" in d["tx", "belongs", "bd"]:
        belongs = d["tx", "belongs", "bd"].edge_index.reshape(2, -1).numpy()
    else:
        belongs = np.zeros((2, 0), np.int64)
    tx_x = tx["x"].numpy()
    if ("tx", "neighbors", "tx") not in d.edge_types:
        fail(f"{path}: no (tx, neighbors, tx) edges")
    return Tile(path, tx_x, bd_x.astype(np.float32), d["tx", "neighbors", "tx"].edge_index.numpy(), belongs,
                tx["pos"].numpy().astype(np.float32), bd["pos"].numpy().astype(np.float32),
                tx["id"].numpy().astype(np.int64), [str(s) for s in bd["id"]])


def read_tile(path, torch):
    t = read_pt_tile(path, torch) if path.endswith(".pt") else read_safetensors_tile(path)
    check_tile(t)
    return t


def hetero(t, torch, HeteroData):
    """The model's input: x of both node types (nan_to_num'ed floats) and the two training edge types."""
    d = HeteroData()
    x = torch.from_numpy(np.ascontiguousarray(t.tx_x))
    d["tx"].x = torch.nan_to_num(x.float()) if x.is_floating_point() else x.long()
    d["bd"].x = torch.nan_to_num(torch.from_numpy(np.ascontiguousarray(t.bd_x)).float())
    d["tx", "neighbors", "tx"].edge_index = torch.from_numpy(np.ascontiguousarray(t.nn)).long()
    d["tx", "belongs", "bd"].edge_index = torch.from_numpy(np.ascontiguousarray(t.belongs)).long()
    return d


# ----------------------------------------------------------------------------------------------------
# Checkpoints

class _Opaque:
    """Stands in for any class a Lightning checkpoint pickles besides tensors (segger's model, fx graphs)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()


class _PermissiveUnpickler(pickle.Unpickler):
    ALLOWED = ("torch._utils", "torch", "collections", "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
               "_codecs", "builtins")

    def find_class(self, module, name):
        if module in self.ALLOWED and not (module == "builtins" and name in ("eval", "exec", "getattr", "__import__")):
            try:
                return super().find_class(module, name)
            except Exception:
                pass
        return _Opaque


class _PermissivePickle:
    Unpickler = _PermissiveUnpickler
    load = pickle.load
    __name__ = "permissive_pickle"


def infer_config(weights, path):
    """segger's model config from its state_dict shapes (a Lightning .ckpt carries no segger-train config)."""
    try:
        vocab, init_emb = weights["tx_embedding.tx.weight"].shape
        _, heads, hidden = weights["conv_first.tx__neighbors__tx.att"].shape
        out = weights["conv_last.tx__neighbors__tx.att"].shape[2]
    except KeyError as e:
        fail(f"{path}: not a segger model state_dict (no {e})")
    mids = {k.split(".")[1] for k in weights if k.startswith("conv_mid_layers.")}
    residual = "lin_first.tx.weight" in weights
    return dict(num_tx_tokens=vocab, init_emb=init_emb, hidden_channels=hidden, out_channels=out, heads=heads,
                mid_layers=len(mids), residual=residual, l2_normalize=residual, aggr="sum")


def load_checkpoint(path, torch):
    """(model config dict for pyg_reference.build_model, {PyG name: numpy weights})."""
    if not os.path.isfile(path):
        fail(f"{path}: no such checkpoint file")
    if path.endswith(".ckpt"):
        ck = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PermissivePickle)
        sd = ck.get("state_dict") if isinstance(ck, dict) else None
        if not isinstance(sd, dict):
            fail(f"{path}: a .ckpt without a state_dict")
        weights = {k[len("model."):]: v.numpy() for k, v in sd.items() if k.startswith("model.")}
        return infer_config(weights, path), weights
    tensors, meta = ref.read_safetensors(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if not weights:
        weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    if "model_config" in meta:
        c = json.loads(meta["model_config"])
        cfg = dict(num_tx_tokens=c["numTxTokens"], init_emb=c["initEmb"], hidden_channels=c["hiddenChannels"],
                   out_channels=c["outChannels"], heads=c["heads"], mid_layers=c["midLayers"],
                   residual=c["residual"], l2_normalize=c["l2Normalize"], aggr=c.get("aggr", "sum"))
    else:
        cfg = infer_config(weights, path)
    return cfg, weights


def make_model(cfg, weights, first_tile, torch, pyg, HeteroData, path):
    model = ref.build_model(cfg, torch, pyg)
    d = hetero(first_tile, torch, HeteroData)
    with torch.no_grad():
        model(d.x_dict, d.edge_index_dict)               # materialize the lazy shapes
    sd = model.state_dict()
    if set(sd) != set(weights):
        fail(f"{path}: its weights do not match the model config {cfg} "
             f"(missing {sorted(set(sd) - set(weights))[:4]}, unexpected {sorted(set(weights) - set(sd))[:4]})")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(weights[k].shape):
            fail(f"{path}: weight {k} has shape {list(weights[k].shape)}, the model (and tile {first_tile.path}) "
                 f"needs {list(v.shape)}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in weights.items()})
    model.eval()
    return model


# ----------------------------------------------------------------------------------------------------
# Per tile

def knn(data, query, k, dist):
    """(idx [Q, k], valid [Q, k]): the k nearest data rows of each query, valid where distance < dist."""
    from scipy.spatial import cKDTree
    q = len(query)
    if len(data) == 0 or q == 0:
        return np.zeros((q, k), np.int64), np.zeros((q, k), bool)
    d, idx = cKDTree(np.asarray(data, np.float64)).query(np.asarray(query, np.float64), k=k,
                                                       distance_upper_bound=dist)
    d, idx = d.reshape(q, k), idx.reshape(q, k)
    valid = d < dist
    return np.where(valid, idx, 0), valid


def sigmoid_scores(dots):
    """float32 sigmoid, an exact-0 dot scoring 0 (segger: similarity == 0 -> -inf before the sigmoid)."""
    dots = dots.astype(np.float32)
    with np.errstate(over="ignore"):
        s = (np.float32(1) / (np.float32(1) + np.exp(-dots))).astype(np.float32)
    return np.where(dots == 0, np.float32(0), s)


def predict_tile(t, model, args, torch, HeteroData):
    """Rows of this tile (score, bound, cell) and its tx-tx edges (pairs of transcript ids)."""
    d = hetero(t, torch, HeteroData)
    with torch.no_grad():
        z = model(d.x_dict, d.edge_index_dict)
    z_tx, z_bd = z["tx"].numpy(), z["bd"].numpy()
    cut = np.float32(args.score_cut)

    idx, valid = knn(t.bd_pos[:, :2], t.tx_pos[:, :2], args.k_bd, args.dist_bd)
    dots = np.einsum("nkd,nd->nk", z_bd[idx], z_tx, dtype=np.float32) if t.n_bd else np.zeros(idx.shape, np.float32)
    scores = np.where(valid, sigmoid_scores(dots), np.float32(-1))
    best = scores.max(axis=1, initial=np.float32(-1))
    # ties go to the lowest bd row among the best candidates
    best_bd = np.where(valid & (scores == best[:, None]), idx, np.iinfo(np.int64).max).min(axis=1, initial=np.iinfo(np.int64).max)
    has = valid.any(axis=1)
    best = np.where(has, np.maximum(best, np.float32(0)), np.float32(0)).astype(np.float32)
    bound = has & (best >= cut)
    cell = [t.bd_id[b] if ok else None for b, ok in zip(best_bd, bound)]

    edges = np.zeros((0, 2), np.int64)
    if args.use_cc:
        edges = (segger_code_edges if args.segger_code else issue_edges)(t, z_tx, bound, model, args, torch, d)
    return best, bound.astype(np.int8), cell, edges


def issue_edges(t, z_tx, bound, model, args, torch, d):
    """Issue 15's tx-tx edges: final embeddings, sigmoid >= score_cut, 2-D distances, self dropped."""
    idx, valid = knn(t.tx_pos[:, :2], t.tx_pos[:, :2], args.k_tx, args.dist_tx)
    rows = np.repeat(np.arange(t.n_tx), args.k_tx).reshape(t.n_tx, args.k_tx)
    keep = valid & (idx != rows) & ~bound[:, None] & ~bound[idx]
    i, j = rows[keep], idx[keep]
    s = sigmoid_scores(np.einsum("ed,ed->e", z_tx[i], z_tx[j], dtype=np.float32))
    ok = s >= np.float32(args.score_cut)
    return np.stack([t.tx_id[i[ok]], t.tx_id[j[ok]]], axis=1)


def segger_code_edges(t, z_tx, bound, model, args, torch, d):
    """segger_dev's tx-tx edges: cosines of the normalized layer-0 embeddings, the tile's median cut too."""
    import torch.nn.functional as F
    x = d["tx"].x
    with torch.no_grad():
        e = model.tx_embedding["tx"](x) if x.ndim == 1 else model.lin0["tx"](x.float())
        e = F.normalize(e, p=2, dim=1).numpy()
    idx, valid = knn(t.tx_pos, t.tx_pos, args.k_tx, args.dist_tx)
    rows = np.repeat(np.arange(t.n_tx), args.k_tx).reshape(t.n_tx, args.k_tx)
    v = np.einsum("nkd,nd->nk", e[idx], e, dtype=np.float32)
    v = np.where(v == 0, np.float32(-np.inf), v)
    median = np.median(v[valid]) if valid.any() else np.float32(-np.inf)
    keep = valid & (v >= median) & (idx != rows) & ~bound[:, None] & ~bound[idx] & (v >= np.float32(args.score_cut))
    return np.stack([t.tx_id[rows[keep]], t.tx_id[idx[keep]]], axis=1)


# ----------------------------------------------------------------------------------------------------
# Across tiles

def merge(rows):
    """One row per transcript id: its best bound row (score, then smallest cell id), else its best row."""
    ids, score, bound = rows["id"], rows["score"], rows["bound"]
    cells = np.array([c if c is not None else "" for c in rows["cell"]], dtype=object).astype(str)
    order = np.lexsort((cells, -score.astype(np.float64), -bound, ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    return order[first]


def components(edges, strong):
    """{transcript id: component cell id} over the edges (weakly or strongly connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if len(edges) == 0:
        return {}
    nodes, inverse = np.unique(edges.reshape(-1), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    m = coo_matrix((np.ones(len(edges), np.int8), (inverse[:, 0], inverse[:, 1])), shape=(len(nodes), len(nodes)))
    _, label = connected_components(m, directed=True, connection="strong" if strong else "weak")
    smallest = np.full(label.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, label, nodes)
    return {int(n): f"cc-{int(smallest[c])}" for n, c in zip(nodes, label)}


# ----------------------------------------------------------------------------------------------------
# Self-check: the same algorithm as plain loops (no KD-tree, no vectorization, no csgraph)

def brute_force(tiles, model, args, torch, HeteroData):
    """{transcript id: (cell id or None, score, bound)} by exhaustive search, issue 15's algorithm."""
    cut = np.float32(args.score_cut)
    best_rows, edges = {}, []
    for t in tiles:
        if t.n_bd < args.min_bd:
            for i in t.tx_id:
                best_rows.setdefault(int(i), []).append((0, np.float32(0), None))
            continue
        d = hetero(t, torch, HeteroData)
        with torch.no_grad():
            z = model(d.x_dict, d.edge_index_dict)
        z_tx, z_bd = z["tx"].numpy(), z["bd"].numpy()
        tx = t.tx_pos[:, :2].astype(np.float64)
        bd = t.bd_pos[:, :2].astype(np.float64)
        bound = np.zeros(t.n_tx, bool)
        for i in range(t.n_tx):
            dist = np.sqrt(((bd - tx[i]) ** 2).sum(1))
            near = sorted(range(t.n_bd), key=lambda j: (dist[j], j))[:args.k_bd]
            cand = [j for j in near if dist[j] < args.dist_bd]
            best, arg = np.float32(0), None
            for j in sorted(cand):
                sc = sigmoid_scores(np.array([np.dot(z_tx[i], z_bd[j])], np.float32))[0]
                if arg is None or sc > best:
                    best, arg = sc, j
            bound[i] = arg is not None and best >= cut
            best_rows.setdefault(int(t.tx_id[i]), []).append((int(bound[i]), best, t.bd_id[arg] if bound[i] else None))
        if args.use_cc:
            for i in np.nonzero(~bound)[0]:
                dist = np.sqrt(((tx - tx[i]) ** 2).sum(1))
                near = sorted(range(t.n_tx), key=lambda j: (dist[j], j))[:args.k_tx]
                for j in near:
                    if j != i and dist[j] < args.dist_tx and not bound[j]:
                        sc = sigmoid_scores(np.array([np.dot(z_tx[i], z_tx[j])], np.float32))[0]
                        if sc >= cut:
                            edges.append((int(t.tx_id[i]), int(t.tx_id[j])))
    out = {}
    for i, rs in best_rows.items():
        b = [r for r in rs if r[0] == 1]
        if b:
            top = max(r[1] for r in b)
            out[i] = (min(r[2] for r in b if r[1] == top), top, 1)
        else:
            out[i] = (None, max(r[1] for r in rs), 0)
    parent = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)       # the root is the smallest id of the component
    for i in list(out):
        if out[i][0] is None and i in parent:
            out[i] = (f"cc-{find(i)}", out[i][1], 0)
    return out


def self_check(tiles, model, args, torch, HeteroData, tx):
    """Compares the outputs with brute_force; exits 1 on any difference."""
    want = brute_force(tiles, model, args, torch, HeteroData)
    got = {int(i): (c, s, int(b)) for i, c, s, b in zip(tx["transcript_id"], tx["segger_cell_id"], tx["score"], tx["bound"])}
    bad = [i for i in want if i not in got or got[i][0] != want[i][0] or got[i][2] != want[i][2]
           or abs(float(got[i][1]) - float(want[i][1])) > 1e-6]
    if bad or set(got) != set(want):
        fail(f"self-check: {len(bad)} transcripts differ from the exhaustive search, e.g. "
             f"{[(i, got.get(i), want[i]) for i in bad[:3]]}")
    return len(want)


# ----------------------------------------------------------------------------------------------------
# Output

def write_atomic(path, write):
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_outputs(out, tx, cells, args):
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = [pa.array(tx["transcript_id"], pa.int64()), pa.array(tx["segger_cell_id"], pa.string()),
            pa.array(tx["score"], pa.float32()), pa.array(tx["bound"], pa.int8()),
            pa.array(tx["x"], pa.float32()), pa.array(tx["y"], pa.float32())]
    names = ["transcript_id", "segger_cell_id", "score", "bound", "x", "y"]
    if tx.get("z") is not None:
        cols.append(pa.array(tx["z"], pa.float32()))
        names.append("z")
    cols.append(pa.array(tx["gene"], pa.int32()))
    names.append("gene")
    table = pa.table(cols, names=names)
    ctable = pa.table([pa.array(cells["segger_cell_id"], pa.string()), pa.array(cells["transcript_count"], pa.int64()),
                       pa.array(cells["x"], pa.float32()), pa.array(cells["y"], pa.float32()),
                       pa.array(cells["source"], pa.string())],
                      names=["segger_cell_id", "transcript_count", "x", "y", "source"])
    if args.format != "csv":
        write_atomic(os.path.join(out, "segger_transcripts.parquet"), lambda p: pq.write_table(table, p))
        write_atomic(os.path.join(out, "segger_cells.parquet"), lambda p: pq.write_table(ctable, p))
    if args.format != "parquet":
        def tx_csv(p):
            with open(p, "w") as f:
                f.write("transcript_id,segger_cell_id,score,bound\n")
                for i, c, s, b in zip(tx["transcript_id"], tx["segger_cell_id"], tx["score"], tx["bound"]):
                    f.write(f"{int(i)},{c or ''},{str(np.float32(s))},{int(b)}\n")

        def cells_csv(p):
            with open(p, "w") as f:
                f.write("segger_cell_id,transcript_count,x,y,source\n")
                for c, n, x, y, s in zip(cells["segger_cell_id"], cells["transcript_count"], cells["x"], cells["y"],
                                         cells["source"]):
                    f.write(f"{c},{int(n)},{str(np.float32(x))},{str(np.float32(y))},{s}\n")
        write_atomic(os.path.join(out, "segger_transcripts.csv"), tx_csv)
        write_atomic(os.path.join(out, "segger_cells.csv"), cells_csv)


# ----------------------------------------------------------------------------------------------------

def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiles", nargs="+", required=True, metavar="DIR",
                   help="tile directories (safetensors v2 or segger .pt) or segger dataset roots")
    p.add_argument("--checkpoint", required=True, help="segger-train .safetensors checkpoint or segger .ckpt")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--score_cut", type=float, default=0.5)
    p.add_argument("--k_bd", type=int, default=4)
    p.add_argument("--dist_bd", type=float, default=10.0)
    p.add_argument("--k_tx", type=int, default=5)
    p.add_argument("--dist_tx", type=float, default=3.0)
    p.add_argument("--use_cc", action="store_true", help="link unbound transcripts into component cells")
    p.add_argument("--min_bd", type=int, default=10, help="skip tiles with fewer boundaries")
    p.add_argument("--format", choices=["parquet", "csv", "both"], default="parquet",
                   help="parquet (default); csv: segger_transcripts.csv and segger_cells.csv instead; both")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    p.add_argument("--num_threads", type=int, default=1, help="torch threads (default 1, as one rank)")
    p.add_argument("--self_check", action="store_true",
                   help="also run the algorithm as plain loops (exhaustive search, union-find) and compare")
    p.add_argument("--segger_code", action="store_true",
                   help="follow segger_dev's code where it differs from issue 15's text (see the header)")
    a = p.parse_args(argv)
    if a.k_bd < 1 or a.k_tx < 1:
        fail("--k_bd and --k_tx must be >= 1")
    if not (0 < a.score_cut <= 1):
        fail(f"--score_cut must lie in (0, 1] (got {a.score_cut})")
    if not (a.dist_bd > 0 and a.dist_tx > 0 and np.isfinite(a.dist_bd) and np.isfinite(a.dist_tx)):
        fail("--dist_bd and --dist_tx must be finite and > 0")
    if a.min_bd < 0:
        fail("--min_bd must be >= 0")
    if a.self_check and a.segger_code:
        fail("--self_check checks issue 15's algorithm, not --segger_code")
    return a


def main(argv):
    args = parse(argv)
    outputs = ["segger_transcripts.parquet", "segger_cells.parquet", "segmentation_log.json",
               "segger_transcripts.csv", "segger_cells.csv"]
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        fail(f"--out {args.out}: exists and is not a directory")
    existing = [n for n in outputs if os.path.exists(os.path.join(args.out, n))]
    if existing and not args.overwrite:
        fail(f"--out {args.out}: {existing[0]} exists (pass --overwrite to replace it)")
    import torch
    import torch_geometric as pyg
    from torch_geometric.data import HeteroData
    torch.set_num_threads(args.num_threads)
    start = time.perf_counter()

    paths = [p for d in args.tiles for p in tile_files(d)]
    cfg, weights = load_checkpoint(args.checkpoint, torch)
    model = None
    parts = {k: [] for k in ("id", "score", "bound", "cell", "x", "y", "z", "gene")}
    all_edges, skipped, rows_seen = [], [], 0
    has_z, token_mode = True, True
    kept = []
    for path in paths:
        t = read_tile(path, torch)
        if args.self_check:
            kept.append(t)
        rows_seen += t.n_tx
        if model is None:
            model = make_model(cfg, weights, t, torch, pyg, HeteroData, args.checkpoint)
        if t.tx_x.ndim == 1 and t.n_tx and (t.tx_x.min() < 0 or t.tx_x.max() >= cfg["num_tx_tokens"]):
            fail(f"{path}: token ids {t.tx_x.min()}..{t.tx_x.max()} do not fit the checkpoint's "
                 f"num_tx_tokens {cfg['num_tx_tokens']}")
        enough = t.n_bd >= args.min_bd and (not args.segger_code or t.n_tx >= 1000)
        if enough:
            score, bound, cell, edges = predict_tile(t, model, args, torch, HeteroData)
            all_edges.append(edges)
        else:
            skipped.append(path)
            score, bound, cell = np.zeros(t.n_tx, np.float32), np.zeros(t.n_tx, np.int8), [None] * t.n_tx
        has_z &= t.tx_pos.shape[1] == 3
        token_mode &= t.tx_x.ndim == 1
        parts["id"].append(t.tx_id)
        parts["score"].append(score)
        parts["bound"].append(bound)
        parts["cell"] += cell
        parts["x"].append(t.tx_pos[:, 0])
        parts["y"].append(t.tx_pos[:, 1])
        parts["z"].append(t.tx_pos[:, 2] if t.tx_pos.shape[1] == 3 else np.zeros(t.n_tx, np.float32))
        parts["gene"].append(t.tx_x.astype(np.int64) if t.tx_x.ndim == 1 else np.full(t.n_tx, -1, np.int64))

    rows = {k: (np.concatenate(v) if k != "cell" else v) for k, v in parts.items()}
    keep = merge(rows)
    ids = rows["id"][keep]
    cell = [rows["cell"][i] for i in keep]
    bound = rows["bound"][keep]
    edges = np.concatenate(all_edges) if all_edges else np.zeros((0, 2), np.int64)
    comp = components(edges, strong=args.segger_code) if args.use_cc else {}
    source = ["nucleus" if c is not None else None for c in cell]
    for k, i in enumerate(ids):
        if cell[k] is None and int(i) in comp:
            cell[k] = comp[int(i)]
            source[k] = "component"
    x, y = rows["x"][keep], rows["y"][keep]
    tx = {"transcript_id": ids, "segger_cell_id": cell, "score": rows["score"][keep], "bound": bound, "x": x, "y": y,
          "z": rows["z"][keep] if has_z else None,
          "gene": [int(g) for g in rows["gene"][keep]] if token_mode else [None] * len(ids)}

    # Cells: transcripts per cell id and their mean position (float64 sums).
    by_cell = {}
    for k, c in enumerate(cell):
        if c is not None:
            e = by_cell.setdefault(c, [0, 0.0, 0.0, source[k]])
            e[0] += 1
            e[1] += float(x[k])
            e[2] += float(y[k])
    names = sorted(by_cell)
    cells = {"segger_cell_id": names, "transcript_count": [by_cell[c][0] for c in names],
             "x": [by_cell[c][1] / by_cell[c][0] for c in names], "y": [by_cell[c][2] / by_cell[c][0] for c in names],
             "source": [by_cell[c][3] for c in names]}
    n_components = sum(1 for c in names if by_cell[c][3] == "component")
    os.makedirs(args.out, exist_ok=True)
    seconds_compute = time.perf_counter() - start
    log = {"implementation": "Scripts/predict_reference.py", "algorithm": "segger_code" if args.segger_code else "issue-15",
           "parameters": {k: getattr(args, k) for k in ("score_cut", "k_bd", "dist_bd", "k_tx", "dist_tx", "use_cc", "min_bd")},
           "checkpoint": args.checkpoint, "model_config": cfg, "tiles_read": len(paths), "tiles_skipped": skipped,
           "transcripts_seen": int(rows_seen), "transcripts_written": int(len(ids)), "bound": int(bound.sum()),
           "component_cells": n_components, "nucleus_cells": len(names) - n_components,
           "cc_edges": int(len(edges)), "ranks": 1, "torch_threads": args.num_threads}
    write_outputs(args.out, tx, cells, args)
    seconds = time.perf_counter() - start
    log["seconds"] = seconds
    if args.self_check:
        log["self_check_transcripts"] = self_check(kept, model, args, torch, HeteroData, tx)
    write_atomic(os.path.join(args.out, "segmentation_log.json"),
                 lambda p: open(p, "w").write(json.dumps(log, indent=2, sort_keys=True) + "\n"))
    print(json.dumps({"implementation": "python-reference", "tiles": len(paths), "tiles_skipped": len(skipped),
                      "transcripts_seen": int(rows_seen), "transcripts_written": int(len(ids)),
                      "bound": int(bound.sum()), "component_cells": n_components, "seconds": round(seconds, 4),
                      "self_check": "pass" if args.self_check else "not run",
                      "seconds_before_write": round(seconds_compute, 4),
                      "transcripts_per_s": round(rows_seen / seconds, 1),
                      "unique_transcripts_per_s": round(len(ids) / seconds, 1)}, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
