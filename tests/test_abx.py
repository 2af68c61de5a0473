"""ABX: the public test vector, and agreement with a slow pure-Python reference in every mode."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict

import numpy as np
import pytest
import torch

from spidrkit.errors import DataError
from spidrkit.eval.abx import (
    ABXConfig,
    Items,
    compute_abx,
    dtw_normalised,
    item_frame_range,
    pair_distances,
    prepare_frames,
    read_item_file,
)

# ---------------------------------------------------------------- slow, obvious reference


def ref_frames(onset, offset, step, drop_last):
    idx = [i for i in range(10_000) if onset - 1e-9 <= step / 2 + i * step <= offset + 1e-9]
    return idx[:-1] if drop_last else idx


def ref_distance(a, b, kind):
    if kind == "angular":
        na = math.sqrt(sum(v * v for v in a))
        nb = math.sqrt(sum(v * v for v in b))
        dot = sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)
        return math.acos(max(-1.0, min(1.0, dot))) / math.pi
    if kind == "euclidean":
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
    if kind == "kl_symmetric":
        return 0.5 * sum((x - y) * (math.log(x) - math.log(y)) for x, y in zip(a, b, strict=True))
    if kind == "identical":
        return 0.0 if list(a) == list(b) else 1.0
    raise ValueError(kind)


def ref_paths(n, m):
    """Every monotone path from (0, 0) to (n-1, m-1) with steps (1,0), (1,1), (0,1)."""
    if n == 1 and m == 1:
        return [[(0, 0)]]
    out = []
    for di, dj in ((1, 0), (1, 1), (0, 1)):
        if n - di >= 1 and m - dj >= 1:
            out += [p + [(n - 1, m - 1)] for p in ref_paths(n - di, m - dj)]
    return out


def ref_dtw(x, y, kind):
    """Brute force: the cheapest path's cost divided by its length (the shortest on ties)."""
    cost = [[ref_distance(a, b, kind) for b in y] for a in x]
    best = None
    for path in ref_paths(len(x), len(y)):
        c = sum(cost[i][j] for i, j in path)
        if best is None or c < best[0] - 1e-9 or (abs(c - best[0]) <= 1e-9 and len(path) < best[1]):
            best = (c, len(path))
    return best[0] / best[1]


def ref_abx(rows, feats, speaker, context, distance, step=0.02, drop_last=False):
    """rows: (fileid, onset, offset, phone, prev, next, speaker); feats: fileid -> list of frames."""
    items = []
    for fid, on, off, ph, pr, nx, spk in rows:
        idx = [i for i in ref_frames(on, off, step, drop_last) if i < len(feats[fid])]
        if idx:
            ctx = (pr, nx) if context == "within" else ()
            items.append((ph, ctx, spk, [feats[fid][i] for i in idx]))
    memo = {}

    def d(i, j):
        if (i, j) not in memo:
            memo[(i, j)] = ref_dtw(items[i][3], items[j][3], distance)
        return memo[(i, j)]

    cells = defaultdict(list)  # (A, B, speaker) -> [cell error, one per context (x speaker)]
    n = range(len(items))
    for pa, pb in itertools.permutations(sorted({it[0] for it in items}), 2):
        for ctx in sorted({it[1] for it in items}):
            for s in sorted({it[2] for it in items}):
                A = [i for i in n if items[i][:3] == (pa, ctx, s)]
                B = [i for i in n if items[i][:3] == (pb, ctx, s)]
                if not A or not B:
                    continue
                x_sets = [A] if speaker == "within" else []
                if speaker == "across":
                    for sx in sorted({it[2] for it in items} - {s}):
                        X = [i for i in n if items[i][:3] == (pa, ctx, sx)]
                        if X:
                            x_sets.append(X)
                for X in x_sets:
                    score, count = 0.0, 0
                    for x in X:
                        for a in A:
                            if x == a:
                                continue
                            for b in B:
                                dxa, dxb = d(x, a), d(x, b)
                                score += 1.0 if dxa < dxb else 0.5 if dxa == dxb else 0.0
                                count += 1
                    if count:
                        cells[(pa, pb, s)].append(1 - score / count)
    per_pair = defaultdict(list)
    for (pa, pb, _), errs in cells.items():
        per_pair[(pa, pb)].append(sum(errs) / len(errs))
    means = [sum(v) / len(v) for v in per_pair.values()]
    return sum(means) / len(means)


# ---------------------------------------------------------------- random small tasks


def random_task(seed, distance, dim=3, n_files=6, n_items=36):
    rnd = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    speakers = ["s1", "s2", "s3"]
    feats = {}
    for f in range(n_files):
        T = 25
        if distance == "identical":
            x = torch.randint(0, 3, (T, 1), generator=gen).float()
        elif distance == "kl_symmetric":
            x = torch.softmax(2 * torch.randn(T, dim, generator=gen), dim=1)
        else:
            x = torch.randn(T, dim, generator=gen)
        feats[f"spk{f % 3}/utt{f}"] = x
    rows = []
    for _ in range(n_items):
        f = rnd.randrange(n_files)
        on = rnd.randrange(0, 40) / 100
        off = on + rnd.randrange(2, 8) / 100
        ph = rnd.choice("abc")
        ctx = rnd.choice([("x", "y"), ("y", "x")])
        rows.append((f"spk{f % 3}/utt{f}", on, off, ph, *ctx, speakers[f % 3]))
    return rows, feats


MODES = [(s, c) for s in ("within", "across") for c in ("within", "any")]


@pytest.mark.parametrize("distance", ["angular", "euclidean", "kl_symmetric", "identical"])
@pytest.mark.parametrize("speaker,context", MODES)
def test_matches_reference(distance, speaker, context):
    for seed, drop_last in ((1, False), (2, True)):
        rows, feats = random_task(seed * 10 + len(distance), distance)
        cfg = ABXConfig(
            speaker=speaker,
            context=context,
            distance=distance,
            drop_last=drop_last,
            max_size_group=None,
            max_x_across=None,
        )
        got = compute_abx(Items.from_rows(rows), feats, cfg, show_progress=False)
        ref_feats = {k: v.tolist() for k, v in feats.items()}
        want = ref_abx(rows, ref_feats, speaker, context, distance, drop_last=drop_last)
        assert got.error == pytest.approx(want, abs=1e-6), (seed, drop_last)


def test_public_test_vector():
    """fastabx README quick start: two 8-d Gaussians, one frame per item, by speaker, Euclidean."""
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (50, 8)), rng.normal(2, 1, (50, 8))])
    phones = ["a"] * 50 + ["b"] * 50
    speakers = ["s1", "s2"] * 50
    rows = [(f"u{i}", 0.0, 0.02, phones[i], "#", "#", speakers[i]) for i in range(100)]
    feats = {f"u{i}": torch.tensor(features[i : i + 1], dtype=torch.float32) for i in range(100)}
    cfg = ABXConfig(context="any", distance="euclidean", max_size_group=None)
    result = compute_abx(Items.from_rows(rows), feats, cfg, show_progress=False)
    assert result.error == pytest.approx(0.03059999644756317, abs=1e-6)
    assert result.n_cells == 4 and result.n_triplets == 4 * 25 * 24 * 25


def test_dtw_matches_brute_force_batched_and_symmetric():
    gen = torch.Generator().manual_seed(0)
    for kind in ("euclidean", "identical"):
        xs = [torch.randint(0, 2, (n, 1), generator=gen).float() for n in (1, 2, 3, 4, 5, 3)]
        if kind == "euclidean":
            xs = [torch.randn(len(x), 2, generator=gen) for x in xs]
        pairs = list(itertools.combinations(range(len(xs)), 2)) + [(0, 0), (3, 3)]
        N = max(len(x) for x in xs)
        X = torch.zeros(len(pairs), N, xs[0].shape[1])
        Y = torch.zeros_like(X)
        for p, (i, j) in enumerate(pairs):
            X[p, : len(xs[i])] = xs[i]
            Y[p, : len(xs[j])] = xs[j]
        n = torch.tensor([len(xs[i]) for i, _ in pairs])
        m = torch.tensor([len(xs[j]) for _, j in pairs])
        batched = dtw_normalised(pair_distances(X, Y, kind), n, m)
        swapped = dtw_normalised(pair_distances(Y, X, kind), m, n)
        for p, (i, j) in enumerate(pairs):
            want = ref_dtw(xs[i].tolist(), xs[j].tolist(), kind)
            assert batched[p].item() == pytest.approx(want, abs=1e-6)
            single = dtw_normalised(
                pair_distances(xs[i][None], xs[j][None], kind), n[p : p + 1], m[p : p + 1]
            )
            assert single.item() == pytest.approx(batched[p].item(), abs=1e-6)
        assert torch.equal(batched, swapped)


def test_distances_match_reference():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.softmax(torch.randn(2, 4, generator=gen), dim=1)
    for kind in ("angular", "euclidean", "kl_symmetric", "identical"):
        got = pair_distances(
            prepare_frames(a[None, None], kind), prepare_frames(b[None, None], kind), kind
        )
        assert got.item() == pytest.approx(ref_distance(a.tolist(), b.tolist(), kind), abs=1e-6)
    assert ref_distance([1, 0], [0, 1], "angular") == pytest.approx(0.5)


def test_item_frame_range_inclusive_and_drop_last():
    # centres at 0.01, 0.03, 0.05, ...: [0.01, 0.05] holds frames 0, 1, 2 (both ends inclusive)
    assert item_frame_range(0.01, 0.05) == (0, 3)
    assert item_frame_range(0.01, 0.05, drop_last=True) == (0, 2)
    assert item_frame_range(0.02, 0.05) == (1, 3)
    assert item_frame_range(0.09, 0.11) == (4, 6)
    for on in np.arange(0, 1, 0.01):
        for dur in (0.01, 0.02, 0.05):
            idx = ref_frames(on, on + dur, 0.02, False)
            start, stop = item_frame_range(on, on + dur)
            assert list(range(start, stop)) == idx


def test_subsampling_is_seeded_and_bounded():
    rows, feats = random_task(5, "euclidean", n_items=60)
    items = Items.from_rows(rows)
    a = compute_abx(items, feats, ABXConfig(max_size_group=2, seed=1), show_progress=False)
    b = compute_abx(items, feats, ABXConfig(max_size_group=2, seed=1), show_progress=False)
    full = compute_abx(items, feats, ABXConfig(max_size_group=None), show_progress=False)
    assert a.error == b.error and a.n_items == b.n_items
    assert a.n_items < full.n_items
    across = ABXConfig(speaker="across", max_x_across=1, max_size_group=None)
    res = compute_abx(items, feats, across, show_progress=False)
    per_ab = defaultdict(set)
    for c in res.cells:
        per_ab[(c.phone_a, c.phone_b, c.context, c.speaker)].add(c.speaker_x)
    assert per_ab and all(len(v) == 1 for v in per_ab.values())


def test_units_jsonl_and_item_file(tmp_path):
    (tmp_path / "items.item").write_text(
        "#file onset offset #phone prev-phone next-phone speaker\n"
        "u1 0.0 0.06 a x y s1\nu1 0.06 0.12 b x y s1\n"
        "u2 0.0 0.06 a x y s1\nu2 0.06 0.12 b x y s1\n"
    )
    (tmp_path / "units.jsonl").write_text(
        '{"audio": "/data/u1.wav", "units": [3, 5], "durations": [3, 3]}\n'
        '{"audio": "/data/u2.wav", "units": [3, 5, 5], "durations": [3, 2, 1]}\n'
    )
    cfg = ABXConfig(distance="identical", max_size_group=None)
    res = compute_abx(tmp_path / "items.item", tmp_path / "units.jsonl", cfg, show_progress=False)
    assert res.error == 0.0 and res.n_cells == 2


ITEM_HEADER_FIELDS = ["#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker"]


def test_bad_item_file_names_file_and_line(tmp_path):
    p = tmp_path / "bad.item"
    p.write_text("#file onset offset #phone prev-phone next-phone speaker\nu1 0.0 0.1 a x y\n")
    with pytest.raises(DataError, match=r"bad\.item:2: expected 7"):
        read_item_file(p)
    p.write_text("#file onset offset #phone prev-phone next-phone speaker\nu1 0.0 zero a x y s\n")
    with pytest.raises(DataError, match=r"bad\.item:2: onset/offset"):
        read_item_file(p)
    p.write_text("file onset offset\n")
    with pytest.raises(DataError, match=r"bad\.item:1: expected the item header"):
        read_item_file(p)


def test_item_file_column_and_line_readers_agree(tmp_path, monkeypatch):
    from spidrkit.eval.abx import items as items_mod

    p = tmp_path / "ok.item"
    rows = [
        "u1 0.0 0.1 a x y s1",
        "u1 0.1 0.25 b a y s1",
        "",
        "u2 1e-1 0.3 a x y s2 ",
        "u2 0 0 c x y s2",
    ]
    p.write_bytes(("\ufeff" + "\r\n".join([" ".join(ITEM_HEADER_FIELDS), *rows]) + "\n").encode())
    fast = items_mod._read_valid_item_file(p)
    assert fast is not None and len(fast) == 4
    monkeypatch.setattr(items_mod, "_read_valid_item_file", lambda path: None)
    slow = read_item_file(p)
    for name in ("fileid", "phone", "prev_phone", "next_phone", "speaker"):
        assert getattr(fast, name) == getattr(slow, name)
    assert fast.onset.tolist() == slow.onset.tolist() and fast.onset.dtype == slow.onset.dtype
    assert fast.offset.tolist() == slow.offset.tolist()
    monkeypatch.undo()
    # every rule the line reader names a line for sends the column reader back to it
    head = " ".join(ITEM_HEADER_FIELDS) + "\n"
    for body in ["u1 0.0 0.1 a x y\n", "u1 0.0 zero a x y s\n", "u1 0.2 0.1 a x y s\n",
                 "u1 0 nan a x y s\n", "u1 0 0.1 a x y s\nu1 0.0 0.10 b x y s\n", "u1 0 99 a x y s\n"]:  # fmt: skip
        p.write_text(head + body)
        assert items_mod._read_valid_item_file(p) is None, body
        with pytest.raises(DataError, match=r"ok\.item:\d"):
            read_item_file(p)


def test_tiles_do_not_change_distances():
    from spidrkit.eval.abx.scoring import Blocks, item_order, pair_dtw
    from spidrkit.eval.abx.task import build_cells, gather_frames

    rows, feats = random_task(7, "euclidean", n_items=50)
    items = Items.from_rows(rows)
    cfg = ABXConfig(speaker="across", context="any", max_size_group=None, max_x_across=None)
    bank = gather_frames(items, feats, show_progress=False)
    cells = build_cells(bank.items, cfg, np.random.default_rng(0))
    i, j, _ = Blocks(cells).item_pairs()
    order = item_order(bank.items, cfg.speaker, cfg.context)
    one = pair_dtw(bank, i, j, "euclidean", order=order, show_progress=False)
    many = pair_dtw(bank, i, j, "euclidean", order=order, tile_frames=7, show_progress=False)
    tiny = pair_dtw(
        bank,
        i,
        j,
        "euclidean",
        tile_frames=5,
        batch_elements=50,
        chunk_elements=64,
        show_progress=False,
    )
    assert len(i) > 100
    np.testing.assert_allclose(many, one, rtol=1e-6)
    np.testing.assert_allclose(tiny, one, rtol=1e-6)


def test_sparse_and_tiled_paths_agree():
    from spidrkit.eval.abx import scoring
    from spidrkit.eval.abx.task import build_cells, gather_frames

    rows, feats = random_task(8, "angular", n_items=50)
    cfg = ABXConfig(max_size_group=None)
    bank = gather_frames(Items.from_rows(rows), feats, show_progress=False)
    i, j, _ = scoring.Blocks(build_cells(bank.items, cfg, None)).item_pairs()
    tiled = scoring.pair_dtw(bank, i, j, "angular", show_progress=False)
    old = scoring.SPARSE_RATIO
    try:
        scoring.SPARSE_RATIO = 10**9  # every tile pair goes the per-pair way
        sparse = scoring.pair_dtw(bank, i, j, "angular", show_progress=False)
    finally:
        scoring.SPARSE_RATIO = old
    assert len(i) > 20
    # acos near 0 amplifies 1-ulp matmul differences (overlapping items): absolute tolerance
    np.testing.assert_allclose(sparse, tiled, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("speaker", ["within", "across"])
def test_small_and_big_cell_scoring_agree(speaker, monkeypatch):
    """Cells scored all together (small) and one by one (big) give the same errors."""
    from spidrkit.eval.abx import scoring
    from spidrkit.eval.abx.task import build_cells, gather_frames

    rows, feats = random_task(9, "identical", n_items=80)  # units: many exact ties
    cfg = ABXConfig(speaker=speaker, context="any", distance="identical", max_size_group=None)
    bank = gather_frames(Items.from_rows(rows), feats, show_progress=False)
    cells = build_cells(bank.items, cfg, np.random.default_rng(0))
    blocks = scoring.Blocks(cells)
    i, j, pos = blocks.item_pairs()
    blocks.fill(pos, scoring.pair_dtw(bank, i, j, "identical", show_progress=False))
    together, n1 = scoring.score_cells(cells, blocks)
    monkeypatch.setattr(scoring, "SMALL_CELL_TRIPLETS", 0)
    one_by_one, n2 = scoring.score_cells(cells, blocks)
    monkeypatch.setattr(scoring, "SMALL_CELL_TRIPLETS", 1 << 12)
    monkeypatch.setattr(scoring, "CHUNK_TRIPLETS", 7)  # chunks of one or two cells
    chunked, n3 = scoring.score_cells(cells, blocks)
    assert len(cells) > 5 and (n1 == n2).all() and (n1 == n3).all()
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_array_equal(together, chunked)


def test_cell_score_binary_search_matches_broadcast():
    from spidrkit.eval.abx.scoring import cell_score

    rng = np.random.default_rng(0)
    dxa = rng.integers(0, 20, (40, 40)).astype(float)  # ties on purpose
    dxb = rng.integers(0, 20, (40, 700)).astype(float)  # 1.1M triplets: the sorted path
    lt = (dxa[:, :, None] < dxb[:, None, :]).sum(2)
    eq = (dxa[:, :, None] == dxb[:, None, :]).sum(2)
    s = lt + 0.5 * eq
    assert cell_score(dxa, dxb, False) == (float(s.sum()), 40 * 40 * 700)
    np.fill_diagonal(s, 0.0)
    assert cell_score(dxa, dxb, True) == (float(s.sum()), 40 * 39 * 700)


@pytest.mark.parametrize("kind", ["random", "ties", "negative"])
def test_keyed_dtw_is_bit_identical_to_float_dtw(kind, monkeypatch):
    """The int64-keyed kernel (every batching, transposed reads) == the float kernel, exactly."""
    from spidrkit.eval.abx import dtw

    monkeypatch.setattr(dtw, "MIN_BATCH_PAIRS", 1)
    gen = torch.Generator().manual_seed(3)
    P, N, M = 300, 9, 13
    cost = torch.rand(P, N, M, generator=gen)
    if kind == "ties":
        cost = (cost * 3).floor()  # 0, 1, 2: many exact ties, zero-cost paths
    if kind == "negative":
        cost = cost - 0.1  # cannot be keyed: the float kernel runs
        assert not dtw._can_key(cost.reshape(-1))
    n = torch.randint(1, N + 1, (P,), generator=gen)
    m = torch.randint(1, M + 1, (P,), generator=gen)
    want = dtw._dtw_float(cost, n, m)
    assert torch.equal(dtw_normalised(cost, n, m), want)
    # the same matrices read transposed (row step 1, column step M), in batches of few cells
    flat = cost.transpose(1, 2).contiguous().reshape(-1)
    base = np.arange(P) * N * M
    got = dtw.dtw_flat(
        flat, base, np.ones(P, np.int64), np.full(P, N), n.numpy(), m.numpy(), batch_cells=40
    )
    np.testing.assert_array_equal(got, want.double().numpy())


def test_bank_in_order_holds_the_same_frames_and_zero_gaps():
    from spidrkit.eval.abx.distances import prepare_frames
    from spidrkit.eval.abx.task import gather_frames

    rows, feats = random_task(11, "angular", n_items=60)
    rows.append((rows[0][0], 0.45, 0.9, "a", "x", "y", rows[0][6]))  # clipped at the file's end
    rows.append((rows[0][0], 0.2, 0.205, "a", "x", "y", rows[0][6]))  # no frame once dropped
    items = Items.from_rows(rows)
    plain = gather_frames(items, feats, drop_last=True, show_progress=False)
    order = np.random.default_rng(0).permutation(len(items))
    laid = gather_frames(
        items, feats, drop_last=True, show_progress=False, order=order, distance="angular"
    )
    assert laid.prepared == "angular" and (laid.length == plain.length).all()
    assert len(plain.length) < len(items)  # the drop leaves some items without a frame
    used = torch.zeros(len(laid.frames), dtype=torch.bool)
    for k in range(len(plain.length)):
        a = plain.frames[plain.start[k] :][: plain.length[k]]
        b = laid.frames[laid.start[k] :][: laid.length[k]]
        assert torch.equal(prepare_frames(a, "angular"), b)
        used[laid.start[k] : laid.start[k] + laid.length[k]] = True
    assert (~used).any() and (laid.frames[~used] == 0).all()
