"""The NumPy LSTM: float64 finite-difference gradients, stepping equals the batched forward, state carries."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_check import numerical_gradient, relative_error

from models.lstm import LSTM

B, T, D, H = 3, 5, 4, 6


def make_lstm(rng: np.random.Generator, input_size: int = D, hidden: int = H) -> LSTM:
    lstm = LSTM(input_size, hidden, rng, dtype=np.float64)
    # Non-trivial biases, so that no gate sits in a special regime during the check.
    lstm.b += rng.standard_normal(lstm.b.shape) * 0.5
    return lstm


def test_gradient_check_every_input_through_forward_and_backward() -> None:
    """Random linear loss on every h_t and on the final (h_T, c_T): checks W, b, x, h0, c0 and dstate."""
    rng = np.random.default_rng(0)
    lstm = make_lstm(rng)
    x = rng.standard_normal((B, T, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w_out = rng.standard_normal((B, T, H))
    w_hT, w_cT = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss() -> float:
        h, cache = lstm.forward(x, (h0, c0))
        hT, cT = cache.final_state
        return float((h * w_out).sum() + (hT * w_hT).sum() + (cT * w_cT).sum())

    _, cache = lstm.forward(x, (h0, c0))
    grads, dx, (dh0, dc0) = lstm.backward(w_out, cache, (w_hT, w_cT))
    for name, array, analytic in [
        ("W", lstm.W, grads["W"]),
        ("b", lstm.b, grads["b"]),
        ("x", x, dx),
        ("h0", h0, dh0),
        ("c0", c0, dc0),
    ]:
        error = relative_error(numerical_gradient(loss, array), analytic)
        assert error < 1e-5, f"{name}: relative error {error:.2e}"


def test_gradient_check_two_stacked_layers() -> None:
    """Layer 2 reads layer 1's outputs; dx of layer 2 is fed as dh into layer 1's backward."""
    rng = np.random.default_rng(1)
    lower, upper = make_lstm(rng, D, H), make_lstm(rng, H, 5)
    x = rng.standard_normal((B, T, D))
    w_out = rng.standard_normal((B, T, 5))

    def loss() -> float:
        h1, _ = lower.forward(x)
        h2, _ = upper.forward(h1)
        return float((h2 * w_out).sum())

    h1, cache1 = lower.forward(x)
    _, cache2 = upper.forward(h1)
    grads2, dh1, _ = upper.backward(w_out, cache2)
    grads1, dx, _ = lower.backward(dh1, cache1)
    for name, array, analytic in [
        ("lower.W", lower.W, grads1["W"]),
        ("lower.b", lower.b, grads1["b"]),
        ("upper.W", upper.W, grads2["W"]),
        ("upper.b", upper.b, grads2["b"]),
        ("x", x, dx),
    ]:
        error = relative_error(numerical_gradient(loss, array), analytic)
        assert error < 1e-5, f"{name}: relative error {error:.2e}"


def test_step_by_step_equals_forward() -> None:
    rng = np.random.default_rng(2)
    lstm = make_lstm(rng)
    x = rng.standard_normal((B, T, D))
    h_all, cache = lstm.forward(x)
    state = None
    for t in range(T):
        h, state = lstm.step(x[:, t], state)
        np.testing.assert_allclose(h, h_all[:, t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[0], cache.final_state[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[1], cache.final_state[1], rtol=1e-12, atol=1e-12)


def test_state_carries_across_calls() -> None:
    """forward over T steps == forward over the first T1 steps, then the rest from that final state."""
    rng = np.random.default_rng(3)
    lstm = make_lstm(rng)
    x = rng.standard_normal((B, T, D))
    h_all, cache = lstm.forward(x)
    h_first, cache_first = lstm.forward(x[:, :2])
    h_rest, cache_rest = lstm.forward(x[:, 2:], cache_first.final_state)
    np.testing.assert_allclose(np.concatenate([h_first, h_rest], axis=1), h_all, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache_rest.final_state[1], cache.final_state[1], rtol=1e-12, atol=1e-12)


def test_truncated_bptt_through_carried_state_matches_full_backward() -> None:
    """Backward of the 2nd chunk hands (dh0, dc0) to the 1st chunk as dstate: same gradients as one pass."""
    rng = np.random.default_rng(4)
    lstm = make_lstm(rng)
    x = rng.standard_normal((B, T, D))
    dh = rng.standard_normal((B, T, H))
    _, cache = lstm.forward(x)
    full, dx_full, _ = lstm.backward(dh, cache)
    _, cache_first = lstm.forward(x[:, :2])
    _, cache_rest = lstm.forward(x[:, 2:], cache_first.final_state)
    rest, dx_rest, dstate = lstm.backward(dh[:, 2:], cache_rest)
    first, dx_first, _ = lstm.backward(dh[:, :2], cache_first, dstate)
    np.testing.assert_allclose(first["W"] + rest["W"], full["W"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(first["b"] + rest["b"], full["b"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([dx_first, dx_rest], axis=1), dx_full, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32() -> None:
    rng = np.random.default_rng(5)
    lstm = LSTM(D, H, rng)
    assert lstm.W.dtype == np.float32 and lstm.b.dtype == np.float32
    x = rng.standard_normal((B, T, D))  # float64 input is cast, not propagated
    h, cache = lstm.forward(x)
    grads, dx, (dh0, dc0) = lstm.backward(np.ones((B, T, H), dtype=np.float32), cache)
    h_step, (_, c_s) = lstm.step(x[:, 0].astype(np.float32))
    for array in (h, cache.gates, cache.c, grads["W"], grads["b"], dx, dh0, dc0, h_step, c_s):
        assert array.dtype == np.float32


def test_layout_and_initialisation() -> None:
    rng = np.random.default_rng(6)
    lstm = LSTM(D, H, rng)
    assert lstm.W.shape == (D + H, 4 * H) and lstm.b.shape == (4 * H,)
    np.testing.assert_array_equal(lstm.b[H : 2 * H], 1.0)  # forget gate
    np.testing.assert_array_equal(np.delete(lstm.b, np.s_[H : 2 * H]), 0.0)
    assert lstm.params()["W"] is lstm.W and lstm.params()["b"] is lstm.b
    block = lstm.W[D:, :H].astype(np.float64)  # recurrent input-gate block is orthogonal
    np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)


def test_in_place_optimiser_update_is_seen() -> None:
    rng = np.random.default_rng(7)
    lstm = LSTM(D, H, rng)
    x = rng.standard_normal((1, 2, D)).astype(np.float32)
    before, _ = lstm.forward(x)
    lstm.params()["W"] -= 0.1
    after, _ = lstm.forward(x)
    assert not np.allclose(before, after)


def test_output_is_read_only_so_the_cache_cannot_be_corrupted() -> None:
    lstm = LSTM(D, H, np.random.default_rng(8))
    h, _ = lstm.forward(np.zeros((B, T, D), dtype=np.float32))
    with pytest.raises(ValueError):
        h[0, 0, 0] = 1.0


def test_bad_shapes_give_clear_errors() -> None:
    lstm = LSTM(D, H, np.random.default_rng(9))
    with pytest.raises(ValueError, match=r"expected shape \(batch, time, 4\)"):
        lstm.forward(np.zeros((B, T, D + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="initial state"):
        lstm.forward(np.zeros((B, T, D), dtype=np.float32), lstm.initial_state(B + 1))
    with pytest.raises(ValueError, match="step input"):
        lstm.step(np.zeros((B, T, D), dtype=np.float32))


def test_prepared_inference_weights_give_bit_identical_outputs_and_training_clears_them() -> None:
    rng = np.random.default_rng(5)
    lstm = LSTM(6, 8, rng, dtype=np.float32)
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    plain_out, plain_cache = lstm.forward(x)
    plain_step, _ = lstm.step(x[:, 0], plain_cache.final_state)
    lstm.prepare_inference()
    out, cache = lstm.forward(x)
    step, _ = lstm.step(x[:, 0], cache.final_state)
    # The gate factors are -1 and -2, so folding them into the weights changes no bit of the result.
    assert np.array_equal(out, plain_out) and np.array_equal(step, plain_step)
    lstm.W += 0.5  # what an optimiser step does, in place
    stale, _ = lstm.forward(x)
    lstm.clear_inference()
    fresh, _ = lstm.forward(x)
    assert np.array_equal(stale, plain_out) and not np.allclose(fresh, plain_out)


def test_one_row_read_with_the_serving_weights_is_the_gate_major_pass_bit_for_bit() -> None:
    # A prompt read on its own takes step()'s layout (one vector-matrix product per step): same numbers.
    rng = np.random.default_rng(6)
    lstm = LSTM(6, 8, rng, dtype=np.float32)
    x = rng.standard_normal((1, 9, 6)).astype(np.float32)
    state = (rng.standard_normal((1, 8)).astype(np.float32), rng.standard_normal((1, 8)).astype(np.float32))
    plain_out, plain_cache = lstm.forward(x, state)
    lstm.prepare_inference()
    out, cache = lstm.forward(x, state)
    assert np.array_equal(out, plain_out) and np.array_equal(cache.gates, plain_cache.gates)
    assert all(np.array_equal(a, b) for a, b in zip(cache.final_state, plain_cache.final_state, strict=True))


def test_buffers_are_reused_only_once_nothing_refers_to_them() -> None:
    rng = np.random.default_rng(7)
    lstm = make_lstm(rng)
    x1, x2 = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))
    dh = rng.standard_normal((B, T, H))

    # Held on to: a second pass must not write over the first one's output, cache, state or gradients.
    out1, cache1 = lstm.forward(x1)
    h_before, gates_before = out1.copy(), cache1.gates.copy()
    state1 = cache1.final_state
    state_before = (state1[0].copy(), state1[1].copy())
    grads1, dx1, _ = lstm.backward(dh, cache1)
    grads_before, dx_before = {k: v.copy() for k, v in grads1.items()}, dx1.copy()
    out2, cache2 = lstm.forward(x2)
    grads2, dx2, _ = lstm.backward(dh, cache2)
    assert np.array_equal(out1, h_before) and np.array_equal(cache1.gates, gates_before)
    assert np.array_equal(state1[0], state_before[0]) and np.array_equal(state1[1], state_before[1])
    assert all(np.array_equal(grads1[k], grads_before[k]) for k in grads1)
    assert np.array_equal(dx1, dx_before)
    # The first cache still gives its own gradients, and the second pass is what a fresh layer computes.
    again, dx_again, _ = lstm.backward(dh, cache1)
    assert np.array_equal(again["W"], grads_before["W"]) and np.array_equal(dx_again, dx_before)
    fresh = make_lstm(np.random.default_rng(7))
    fresh_out, fresh_cache = fresh.forward(x2)
    fresh_grads, fresh_dx, _ = fresh.backward(dh, fresh_cache)
    assert np.array_equal(out2, fresh_out) and np.array_equal(grads2["W"], fresh_grads["W"])
    assert np.array_equal(dx2, fresh_dx)

    # Let go of everything: the next pass writes into the memory of an earlier one instead of new memory.
    used = {cache.x.base.__array_interface__["data"][0] for cache in (cache1, cache2)}
    del out1, cache1, state1, grads1, dx1, again, dx_again, out2, cache2, grads2, dx2
    _, cache3 = lstm.forward(x1)
    assert cache3.x.base.__array_interface__["data"][0] in used
