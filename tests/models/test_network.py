"""Network: exact gradients for every head, regulariser and parameter, scores/step consistency, save/load and
its errors. Every head of models/heads.py runs through the same tests (HEAD_VARIANTS covers HEADS)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from gradient_check import numerical_gradient, relative_error

from models.heads import HEADS
from models.network import FORMAT_KEY, Network, NetworkConfig

V, D, H = 11, 5, 4

# One plain variant per head; the interface tests below run on each.
HEAD_VARIANTS = {name: NetworkConfig(V, D, H, loss=name) for name in HEADS}

VARIANTS = {
    "mse": NetworkConfig(V, D, H, loss="mse"),
    "cosine": NetworkConfig(V, D, H, loss="cosine"),
    "cos_softmax": NetworkConfig(V, D, H, loss="cos_softmax"),
    "cos_softmax-frozen-nobias": NetworkConfig(
        V, D, H, loss="cos_softmax", output_bias=False, train_output=False
    ),
    "softmax": NetworkConfig(V, D, H, loss="softmax"),
    "cos_softmax-2layers-dropout": NetworkConfig(V, D, H, layers=2, loss="cos_softmax", dropout=0.3),
    "softmax-2layers-dropout": NetworkConfig(V, D, H, layers=2, loss="softmax", dropout=0.3),
    "cos_softmax-input-offset-dropout": NetworkConfig(
        V, D, H, loss="cos_softmax", dropout=0.3, train_input=True
    ),
    "mse-input-offset": NetworkConfig(V, D, H, loss="mse", train_input=True),
    "adaptive_cos_softmax": NetworkConfig(V, D, H, loss="adaptive_cos_softmax"),
    "adaptive-3-clusters-frozen-nobias": NetworkConfig(
        V,
        D,
        H,
        loss="adaptive_cos_softmax",
        output_bias=False,
        train_output=False,
        cluster_coverage=[0.3, 0.6, 0.9],
    ),
    "adaptive-every-regulariser-2layers": NetworkConfig(
        V,
        D,
        H,
        layers=2,
        loss="adaptive_cos_softmax",
        dropout=0.3,
        locked_dropout=True,
        train_input=True,
        embedding_dropout=0.3,
        recurrent_dropout=0.3,
    ),
    "softmax-recurrent-dropconnect": NetworkConfig(V, D, H, loss="softmax", recurrent_dropout=0.5),
    "cos_softmax-tied-embedding-dropout": NetworkConfig(
        V, D, H, loss="cos_softmax", dropout=0.3, tie_vectors=True, embedding_dropout=0.3
    ),
    "adaptive-tied-2layers": NetworkConfig(V, D, H, layers=2, loss="adaptive_cos_softmax", tie_vectors=True),
    "cos_softmax-prediction-norm": NetworkConfig(V, D, H, loss="cos_softmax", prediction_norm=True),
    "adaptive-prediction-norm-input-offset-dropout": NetworkConfig(
        V, D, H, loss="adaptive_cos_softmax", prediction_norm=True, train_input=True, dropout=0.3
    ),
}


def _network(config: NetworkConfig, dtype: type = np.float64, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    embedding = rng.standard_normal((config.vocab_size, config.dim))
    counts = rng.integers(1, 100, size=config.vocab_size)
    return Network(config, embedding, rng, dtype=dtype, unigram_counts=counts)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradient_check_every_parameter(name: str) -> None:
    """Central finite differences in float64 against the analytic gradient, for every entry of every array,
    starting from a non-zero carried state (stateful training) and with a fixed dropout mask."""
    network = _network(VARIANTS[name])
    data_rng = np.random.default_rng(1)
    ids = data_rng.integers(0, V, size=(3, 5))
    state = [
        (0.5 * data_rng.standard_normal((3, H)), 0.5 * data_rng.standard_normal((3, H)))
        for _ in network.lstms
    ]

    def loss_at() -> float:
        return network.loss_grads_state(ids, np.random.default_rng(7), state=state)[0]

    _, grads, _ = network.loss_grads_state(ids, np.random.default_rng(7), state=state)
    assert set(grads) == set(network.params)
    for param_name, param in network.params.items():
        error = relative_error(numerical_gradient(loss_at, param), grads[param_name])
        assert error < 1e-5, f"{name}: {param_name} relative error {error:.2e}"


@pytest.mark.parametrize("name", list(HEAD_VARIANTS))
def test_every_head_is_gradient_checked(name: str) -> None:
    assert any(config.loss == name for config in VARIANTS.values())


@pytest.mark.parametrize(
    "config",
    [
        *HEAD_VARIANTS.values(),
        VARIANTS["cos_softmax-2layers-dropout"],
        VARIANTS["adaptive-prediction-norm-input-offset-dropout"],
    ],
)
def test_step_matches_forward_sequence_and_scores_are_logits(config: NetworkConfig) -> None:
    network = _network(config, dtype=np.float32)
    ids = np.random.default_rng(2).integers(0, V, size=(2, 6))
    outputs, final = network.forward_sequence(ids)
    state = None
    for t in range(ids.shape[1]):
        output, state = network.step(ids[:, t], state)
        np.testing.assert_allclose(output, outputs[:, t], rtol=1e-5, atol=1e-6)
    for (h1, c1), (h2, c2) in zip(final, state, strict=True):
        np.testing.assert_allclose(h1, h2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c1, c2, rtol=1e-5, atol=1e-6)
    logits = network.scores(outputs[:, -1])
    assert logits.shape == (2, V) and logits.dtype == np.float32
    similarity = network.similarity(outputs[:, -1])
    if not network.head.predicts_vector:
        assert similarity is None
    else:
        assert similarity.shape == (2, V) and np.all(np.abs(similarity) <= 1.0 + 1e-5)


@pytest.mark.parametrize("config", [VARIANTS["cos_softmax"], VARIANTS["cos_softmax-2layers-dropout"]])
def test_a_right_padded_batch_gives_each_row_what_its_own_pass_gives(config: NetworkConfig) -> None:
    network = _network(config, dtype=np.float32)
    rng = np.random.default_rng(4)
    rows = [rng.integers(0, V, size=n) for n in (7, 4, 1, 7)]
    padded = np.zeros((len(rows), 7), dtype=np.int64)
    for row, ids in enumerate(rows):
        padded[row, : len(ids)] = ids
        padded[row, len(ids) :] = rng.integers(0, V, size=7 - len(ids))  # whatever pads must not matter
    lengths = np.array([len(ids) for ids in rows])
    outputs, final = network.forward_sequence(padded, lengths=lengths)
    for row, ids in enumerate(rows):
        alone, alone_final = network.forward_sequence(ids[None, :])
        np.testing.assert_allclose(outputs[row, : len(ids)], alone[0], rtol=1e-5, atol=1e-6)
        for (h, c), (h1, c1) in zip(final, alone_final, strict=True):  # the state after its own last token
            np.testing.assert_allclose(h[row], h1[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(c[row], c1[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [*HEAD_VARIANTS, "adaptive-every-regulariser-2layers"])
def test_validation_loss_is_the_training_loss_without_dropout(name: str) -> None:
    network = _network({**HEAD_VARIANTS, **VARIANTS}[name])
    ids = np.random.default_rng(3).integers(0, V, size=(3, 7))
    loss, _ = network.loss_and_grads(ids, np.random.default_rng(0), train=False)
    assert network.loss_and_state(ids)[0] == pytest.approx(loss, rel=1e-10)


def _entropy(scores: np.ndarray) -> np.ndarray:
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=1)


@pytest.mark.parametrize("loss", ["cos_softmax", "adaptive_cos_softmax"])
def test_prediction_norm_makes_a_longer_predicted_vector_a_surer_one(loss: str) -> None:
    """Without it the logits see only the predicted vector's direction (models trained before it load with it
    off and score as they did); with it, doubling the vector doubles the logits' spread."""
    rng = np.random.default_rng(3)
    output = rng.standard_normal((4, D))
    for prediction_norm in (False, True):
        network = _network(
            NetworkConfig(V, D, H, loss=loss, output_bias=False, prediction_norm=prediction_norm)
        )
        once, twice = network.scores(output), network.scores(2.0 * output)
        spread = (twice - twice.mean(axis=1, keepdims=True)) / (once - once.mean(axis=1, keepdims=True))
        if loss == "cos_softmax":  # plain logits: the ratio itself
            np.testing.assert_allclose(spread, 2.0 if prediction_norm else 1.0, rtol=1e-6)
        # Either head: the distribution is sharper exactly when the norm counts.
        entropy = [_entropy(scores) for scores in (once, twice)]
        if prediction_norm:
            assert np.all(entropy[1] < entropy[0] - 1e-6)
        else:
            np.testing.assert_allclose(entropy[1], entropy[0], rtol=1e-7)
    assert NetworkConfig.from_dict({"vocab_size": V, "dim": D}).prediction_norm is False


def test_save_load_round_trip(tmp_path: Path) -> None:
    network = _network(VARIANTS["cos_softmax-2layers-dropout"], dtype=np.float32)
    path = tmp_path / "lstm.npz"
    network.save(path)
    loaded = Network.load(path, network.embedding)
    assert loaded.config == network.config
    assert set(loaded.params) == set(network.params)
    for name, value in network.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
        assert loaded.params[name].dtype == np.float32
    # The loaded LSTM layers use the loaded arrays (params are the layers' own arrays, not copies).
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(loaded.forward_sequence(ids)[0], network.forward_sequence(ids)[0])
    with np.load(path, allow_pickle=False) as archive:  # loadable without pickle, config as a 0-d string
        assert json.loads(str(archive[FORMAT_KEY]))["layers"] == 2


def test_load_rejects_a_wrong_shape_with_a_message_naming_the_array(tmp_path: Path) -> None:
    network = _network(VARIANTS["cos_softmax"], dtype=np.float32)
    arrays = {FORMAT_KEY: np.array(json.dumps(asdict(network.config))), **network.params}
    arrays["head.W"] = np.zeros((H + 1, D), dtype=np.float32)
    path = tmp_path / "corrupt.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(
        ValueError, match=r"corrupt\.npz: array 'head\.W' has shape \(5, 5\), expected \(4, 5\)"
    ):
        Network.load(path, network.embedding)


@pytest.mark.parametrize("array", ["head.W", FORMAT_KEY])
def test_load_refuses_pickled_arrays_naming_the_file_and_the_array(tmp_path: Path, array: str) -> None:
    # The message must name the file and the array; NumPy's own refusal says only "Object arrays cannot be
    # loaded when allow_pickle=False".
    network = _network(VARIANTS["cos_softmax"], dtype=np.float32)
    arrays = {FORMAT_KEY: np.array(json.dumps(asdict(network.config))), **network.params}
    arrays[array] = np.array([{"payload": 1}], dtype=object)  # np.savez pickles object arrays
    path = tmp_path / "pickled.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match=rf"pickled\.npz: array '{re.escape(array)}' holds Python objects"):
        Network.load(path, network.embedding)


def test_load_rejects_missing_arrays_other_vectors_and_non_npz(tmp_path: Path) -> None:
    network = _network(VARIANTS["cos_softmax"], dtype=np.float32)
    path = tmp_path / "lstm.npz"
    network.save(path)
    with pytest.raises(ValueError, match=r"embedding has shape \(12, 5\).*expects \(11, 5\)"):
        Network.load(path, np.zeros((V + 1, D), dtype=np.float32))
    arrays = {FORMAT_KEY: np.array(json.dumps(asdict(network.config))), **network.params}
    del arrays["out.bias"]
    with open(tmp_path / "partial.npz", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(
        ValueError, match=r"partial\.npz: arrays do not match the config \(missing \['out\.bias'\]"
    ):
        Network.load(tmp_path / "partial.npz", network.embedding)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match=r"text\.npz: not a readable \.npz archive"):
        Network.load(tmp_path / "text.npz", network.embedding)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="loss 'hinge' is unknown"):
        _network(replace(VARIANTS["mse"], loss="hinge"))
    with pytest.raises(ValueError, match="layers must be 1 or 2"):
        _network(replace(VARIANTS["mse"], layers=3))


def test_inference_cache_matches_uncached_scores_and_is_cleared_by_training() -> None:
    network = _network(VARIANTS["cos_softmax"], dtype=np.float32)
    outputs, _ = network.forward_sequence(np.array([[1, 2, 3]]))
    last = outputs[:, -1]
    uncached_scores, uncached_similarity = network.scores(last), network.similarity(last)
    network.prepare_inference()
    np.testing.assert_allclose(network.scores(last), uncached_scores, rtol=1e-6)
    np.testing.assert_allclose(network.similarity(last), uncached_similarity, rtol=1e-6)
    # Similarity is measured against the (trainable) output vectors the prediction is scored against.
    unit_out = network.params["out.vectors"] / np.linalg.norm(network.params["out.vectors"], axis=1)[:, None]
    unit_last = last / np.linalg.norm(last, axis=1, keepdims=True)
    np.testing.assert_allclose(network.similarity(last), unit_last @ unit_out.T, rtol=1e-5, atol=1e-6)
    # A training step updates the output vectors in place, so the cache must not survive it.
    network.loss_and_grads(np.array([[1, 2, 3, 4]]), np.random.default_rng(0))
    network.params["out.vectors"] *= 2.0
    network.params["out.vectors"][0] += 1.0
    assert not np.allclose(network.scores(last), uncached_scores)


def test_adaptive_softmax_is_an_exact_distribution_grouped_by_frequency() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 100, size=V)
    config = VARIANTS["adaptive-3-clusters-frozen-nobias"]
    network = Network(config, rng.standard_normal((V, D)), rng, dtype=np.float64, unigram_counts=counts)
    cluster = network.buffers["out.cluster"]
    assert set(cluster.tolist()) == {0, 1, 2, 3}
    # Groups follow frequency: every head word is at least as frequent as every word of a later cluster.
    for group in range(3):
        assert counts[cluster == group].min() >= counts[cluster > group].max()
    outputs, _ = network.forward_sequence(np.array([[1, 2, 3, 4, 5]]))
    log_p = network.scores(outputs[0])
    np.testing.assert_allclose(np.log(np.exp(log_p).sum(axis=1)), 0.0, atol=1e-10)


def test_adaptive_softmax_batch_without_tail_targets_gives_tail_words_zero_gradient() -> None:
    # The tail clusters' rows of the output-vector gradient are written per cluster, not zero-filled first:
    # a cluster no position targets must still get exact zeros (and the whole gradient must check).
    network = _network(VARIANTS["adaptive_cos_softmax"])
    cluster = network.buffers["out.cluster"]
    head_words = np.flatnonzero(cluster == 0)
    # Fill freed memory with non-zero gradients first, so a missing zero-fill would show.
    network.loss_grads_state(np.random.default_rng(3).integers(0, V, size=(3, 5)), np.random.default_rng(7))
    ids = np.random.default_rng(1).choice(head_words, size=(3, 5))

    def loss_at() -> float:
        return network.loss_grads_state(ids, np.random.default_rng(7))[0]

    _, grads, _ = network.loss_grads_state(ids, np.random.default_rng(7))
    assert np.all(grads["out.vectors"][cluster > 0] == 0.0)
    assert np.any(grads["out.vectors"][cluster == 0] != 0.0)
    for name in ("out.vectors", "out.bias", "out.cluster_vectors"):
        error = relative_error(numerical_gradient(loss_at, network.params[name]), grads[name])
        assert error < 1e-5, f"{name}: relative error {error:.2e}"


def test_adaptive_clusters_save_load_and_a_damaged_cluster_array_is_refused(tmp_path: Path) -> None:
    network = _network(VARIANTS["adaptive_cos_softmax"], dtype=np.float32)
    path = tmp_path / "lstm.npz"
    network.save(path)
    loaded = Network.load(path, network.embedding)
    np.testing.assert_array_equal(loaded.buffers["out.cluster"], network.buffers["out.cluster"])
    ids = np.array([[1, 2, 3, 4]])
    outputs = network.forward_sequence(ids)[0][0]
    np.testing.assert_array_equal(loaded.scores(outputs), network.scores(outputs))
    loaded.prepare_inference()
    np.testing.assert_allclose(loaded.scores(outputs), network.scores(outputs), rtol=1e-5, atol=1e-6)
    arrays = {FORMAT_KEY: np.array(json.dumps(asdict(network.config))), **network.params}
    arrays["out.cluster"] = np.full(V, 7, dtype=np.int32)
    with open(tmp_path / "bad.npz", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: array 'out\.cluster' must hold cluster numbers 0\.\.2"):
        Network.load(tmp_path / "bad.npz", network.embedding)


def test_regularisers_drop_what_they_say() -> None:
    config = replace(VARIANTS["cos_softmax-input-offset-dropout"], locked_dropout=True)
    network = _network(config)
    mask = network._dropout_mask(3, 5, D, np.random.default_rng(0))
    assert mask.shape == (3, 1, D)  # one mask per sequence, shared by its time steps
    # Embedding dropout removes word types: a dropped word gets no offset gradient anywhere in the batch.
    network = _network(
        replace(VARIANTS["cos_softmax-input-offset-dropout"], dropout=0.0, embedding_dropout=0.5)
    )
    ids = np.random.default_rng(4).integers(0, V, size=(4, 9))
    _, grads = network.loss_and_grads(ids, np.random.default_rng(5))
    seen = np.unique(ids[:, :-1])
    silent = [w for w in seen if not np.any(grads["input.offset"][w])]
    assert 0 < len(silent) < len(seen)
    assert network.loss_and_grads(ids, np.random.default_rng(5), train=False)[1]["input.offset"][silent].any()
