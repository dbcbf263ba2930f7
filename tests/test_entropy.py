"""Entropy core: integer tables and the grouped range coder."""

import numpy as np
import pytest
import torch
from ncodec.entropy.coder import DecodeError, TableSet, cost_bits, decode, encode
from ncodec.entropy.factorized import FactorizedDensity
from ncodec.entropy.gaussian import gaussian_tables, scale_table, scale_thresholds
from ncodec.entropy.tables import PRECISION, pmf_to_counts


@pytest.fixture(scope="module")
def gauss() -> TableSet:
    counts, radii = gaussian_tables(scale_table(), PRECISION)
    return TableSet(counts, 2 * radii + 1, -radii)


def draw(rng, gauss, n):
    index = rng.integers(0, 40, n)
    symbols = np.round(rng.normal(0, scale_table()[index])).astype(np.int64)
    return symbols, index


def test_counts_are_positive_and_sum_to_the_precision(rng):
    pmf = rng.random((5, 300)) ** 8
    counts = pmf_to_counts(pmf, PRECISION)
    assert (counts >= 1).all() and (counts.sum(1) == 1 << PRECISION).all()


def test_round_trip_of_gaussian_symbols(rng, gauss):
    symbols, index = draw(rng, gauss, 50_000)
    assert np.array_equal(decode(encode(symbols, index, gauss), index, gauss), symbols)


def test_out_of_range_values_round_trip_through_escapes(rng, gauss):
    symbols, index = draw(rng, gauss, 1000)
    symbols[:6] = [10**6, -(10**12), 5000, -3, 2**62 - 1, -(2**62)]
    index[:6] = 0
    assert np.array_equal(decode(encode(symbols, index, gauss), index, gauss), symbols)


def test_rate_is_within_half_a_percent_of_the_information_content(rng, gauss):
    symbols, index = draw(rng, gauss, 200_000)
    rel = symbols - gauss.offsets[index]
    probs = gauss.counts[index, rel] / (1 << PRECISION)
    ideal_bits = -np.log2(probs).sum()
    actual_bits = len(encode(symbols, index, gauss)) * 8
    assert actual_bits <= ideal_bits * 1.005 + 64


def test_cost_bits_predicts_the_payload_size_symbol_by_symbol(rng, gauss):
    symbols, index = draw(rng, gauss, 20_000)
    symbols[:5] = [10**6, -(10**9), 70_000, 300, -400]  # escapes
    index[:5] = 0
    bits = cost_bits(symbols, index, gauss)
    assert bits.shape == symbols.shape and (bits > 0).all()
    assert bits[:5].min() > 16 + np.log2(64)  # escape bin + bit-length + at least one 16-bit piece
    assert abs(8 * len(encode(symbols, index, gauss)) - bits.sum()) < 0.005 * bits.sum() + 64
    likely = symbols == 0
    assert bits[likely & (index == 39)].mean() > bits[likely & (index == 0)].mean()  # wide vs narrow


def test_encoding_is_deterministic(rng, gauss):
    symbols, index = draw(rng, gauss, 10_000)
    assert encode(symbols, index, gauss) == encode(symbols.copy(), index.copy(), gauss)


def test_empty_input_round_trips(gauss):
    empty = np.zeros(0, np.int64)
    assert decode(encode(empty, empty, gauss), empty, gauss).size == 0


def test_payload_with_partial_word_is_refused(gauss):
    with pytest.raises(DecodeError, match="multiple of 4"):
        decode(b"abc", np.zeros(3, np.int64), gauss)


def test_garbage_payload_never_raises_anything_but_decode_error(rng, gauss):
    index = rng.integers(0, 64, 2000)
    for _ in range(50):
        blob = rng.integers(0, 256, 4 * int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            out = decode(blob, index, gauss)
            assert out.shape == index.shape
        except DecodeError:
            pass


def test_bad_table_index_is_refused(gauss):
    with pytest.raises(ValueError, match="table index"):
        encode(np.zeros(2, np.int64), np.array([0, 64]), gauss)


def test_scale_thresholds_pick_the_nearest_table_in_log_space():
    table = scale_table()
    thresholds = scale_thresholds(table, 12)
    for i in (0, 10, 63):
        s = int(round(table[i] * 4096))
        assert np.searchsorted(thresholds, s, side="right") == i


def test_factorized_tables_follow_the_learned_density():
    torch.manual_seed(0)
    density = FactorizedDensity(4)
    counts = density.integer_tables(radius=8, precision=PRECISION)
    assert counts.shape == (4, 18) and (counts.sum(1) == 1 << PRECISION).all()
    with torch.no_grad():
        lik = density.likelihood(torch.zeros(1, 4, 1, 1)).flatten()
    np.testing.assert_allclose(counts[:, 8] / (1 << PRECISION), lik.numpy(), rtol=0.01)


def test_categorical_prior_codes_rvq_indices_near_their_entropy(rng):
    from ncodec.entropy.categorical import CategoricalPrior, stage_index

    stages, k, n = 4, 256, 20_000
    skew = rng.dirichlet(np.full(k, 0.3), stages)
    codes = np.stack([rng.choice(k, n, p=skew[s]) for s in range(stages)], 1)
    prior = CategoricalPrior(stages, k)
    prior.fit_counts(torch.from_numpy(codes))
    tables = prior.table_set()
    payload = encode(codes.ravel(), stage_index(codes), tables)
    assert np.array_equal(decode(payload, stage_index(codes), tables).reshape(codes.shape), codes)
    ideal = float(prior.bits(torch.from_numpy(codes)).sum().detach())
    assert len(payload) * 8 <= ideal * 1.01 + 64
    assert len(payload) * 8 < n * stages * 8 * 0.95  # beats fixed-length 8-bit packing
