#!/usr/bin/env python3
"""How far a predict fixture (tiles + checkpoint) lies from every threshold of predict_reference.py's
algorithm at the default flags, so that float32 differences in the last bits cannot change a decision.

    python Scripts/predict_fixture_margins.py TILES_DIR CHECKPOINT

Prints, over all tiles: |score - score_cut| for the transcript-nucleus candidates (the k_bd nearest within
dist_bd) and for the transcript-transcript pairs (the k_tx nearest within dist_tx, self dropped: a superset
of the --use_cc pairs); |d - dist_bd| over every transcript-nucleus pair; |d - dist_tx| over every
transcript pair; where the k_bd-th nearest nucleus is within dist_bd, its gap to the next; where the
k_tx-th nearest transcript (self included) is within dist_tx, its gap to the next. Needs what
predict_reference.py needs (torch, torch_geometric, numpy, scipy).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import predict_reference as pr  # noqa: E402

SCORE_CUT, K_BD, DIST_BD, K_TX, DIST_TX = 0.5, 4, 10.0, 5, 3.0


def main(tiles_dir, checkpoint):
    import torch
    import torch_geometric as pyg
    from torch_geometric.data import HeteroData
    cfg, weights = pr.load_checkpoint(checkpoint, torch)
    model = None
    m = dict(score_tx_bd=np.inf, score_tx_tx=np.inf, dist_bd=np.inf, dist_tx=np.inf, gap_bd=np.inf, gap_tx=np.inf)
    for path in pr.tile_files(tiles_dir):
        t = pr.read_tile(path, torch)
        if model is None:
            model = pr.make_model(cfg, weights, t, torch, pyg, HeteroData, checkpoint)
        d = pr.hetero(t, torch, HeteroData)
        with torch.no_grad():
            z = model(d.x_dict, d.edge_index_dict)
        z_tx, z_bd = z["tx"].numpy(), z["bd"].numpy()
        tx = t.tx_pos[:, :2].astype(np.float64)
        bd = t.bd_pos[:, :2].astype(np.float64)
        rows = np.arange(t.n_tx)[:, None]

        idx, valid = pr.knn(t.bd_pos[:, :2], t.tx_pos[:, :2], K_BD, DIST_BD)
        s = pr.sigmoid_scores(np.einsum("nkd,nd->nk", z_bd[idx], z_tx, dtype=np.float32))
        if valid.any():
            m["score_tx_bd"] = min(m["score_tx_bd"], np.abs(s[valid].astype(np.float64) - SCORE_CUT).min())
        idx, valid = pr.knn(t.tx_pos[:, :2], t.tx_pos[:, :2], K_TX, DIST_TX)
        valid &= idx != rows
        s = pr.sigmoid_scores(np.einsum("nkd,nd->nk", z_tx[idx], z_tx, dtype=np.float32))
        if valid.any():
            m["score_tx_tx"] = min(m["score_tx_tx"], np.abs(s[valid].astype(np.float64) - SCORE_CUT).min())

        for name, dist, k, other, own in (("bd", DIST_BD, K_BD, bd, False), ("tx", DIST_TX, K_TX, tx, True)):
            D = np.sqrt(((tx[:, None, :] - other[None, :, :]) ** 2).sum(-1))
            off = ~np.eye(len(tx), dtype=bool) if own else np.ones(D.shape, bool)
            if off.any():
                m["dist_" + name] = min(m["dist_" + name], np.abs(D[off] - dist).min())
            S = np.sort(D, axis=1)
            if S.shape[1] > k:
                near = S[:, k - 1] < dist
                if near.any():
                    m["gap_" + name] = min(m["gap_" + name], (S[:, k] - S[:, k - 1])[near].min())
    print(json.dumps({k: float(v) for k, v in m.items()}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
