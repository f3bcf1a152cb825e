"""One LSTM layer in NumPy: fused weights, full backpropagation through time, O(1) stepping for generation.

Layout (in the style of jcjohnson's torch-rnn LSTM.lua), written down once here:

    W : (D + H, 4H)   rows [:D] multiply the input x_t, rows [D:] multiply the previous hidden state h_{t-1}
    b : (4H,)
    columns of W and b, each H wide, in gate order  i | f | o | g
        i = sigmoid(a[0:H])      input gate
        f = sigmoid(a[H:2H])     forget gate (its bias starts at 1, so the cell remembers by default)
        o = sigmoid(a[2H:3H])    output gate
        g = tanh(a[3H:4H])       candidate cell value
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

All four nonlinearities come from ONE np.tanh over the step's four gate blocks: sigmoid(a) =
(1 + tanh(a / 2)) / 2, the halving of the i, f, o pre-activations folded into copies of the weights made
once per forward call (x 0.5 is exact in floating point, so no bit of the pre-activations changes), then one
multiply and one add over the three sigmoid blocks. Measured here (numpy 2.4, float32, (64, 1024) blocks),
np.tanh costs about 0.7x of np.exp per element, g needs no extra pass (the 1 / (1 + exp) form needs
2 sigmoid(2a) - 1 on it), and tanh saturates where exp overflows.

Internally everything is time-major. Forward keeps the gates gate-major, (4, T, B, H): each gate of each step
is then one contiguous (B, H) block, so the elementwise work of a step is a handful of ufunc calls over whole
blocks (NumPy pays a dispatch per row when it works on a column slice of a (B, 4H) row, which measured as
much as the arithmetic itself at B = 64). Backward writes the gate gradients row-major, (T, B, 4H), which is
what its GEMMs want: one per step for the recursion and one over all T*B rows for each weight gradient and dx.
The public interface is batch-major, (B, T, .); the conversions are one copy of x in forward and free
transposed views.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Gate order i | f | o | g (module docstring): the first SIGMOID_GATES blocks are sigmoids, the last the tanh.
SIGMOID_GATES = 3


@dataclass
class LSTMCache:
    """What backward needs from forward.

    Memory: T*B*(D+1 + 4H + 3H) + 2*B*H numbers (x with a bias column, activated gates, h and c with the
    initial state in slot 0, and tanh(c)). For B=64, T=32, D=200, H=256 in float32 that is
    64*32*(201 + 7*256)*4 bytes, about 16.3 MB.
    """

    x: np.ndarray  # (T, B, D+1) time-major copy of the input with a constant-1 column for the bias
    gates: np.ndarray  # (4, T, B, H) gate-major activations i, f, o (sigmoid) and g (tanh)
    h: np.ndarray  # (T+1, B, H): h[0] is the initial state, h[t+1] the output at step t
    c: np.ndarray  # (T+1, B, H): c[0] is the initial cell state
    tanh_c: np.ndarray  # (T, B, H): tanh(c[t+1]), kept so backward does not recompute it
    recurrent_mask: np.ndarray | None = None  # (H, 4H) DropConnect mask the recurrent weights were used with

    @property
    def final_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(h_T, c_T), copied: the cache's arrays are cut from a block the layer reuses once nothing refers
        to it (_Blocks), and a state carried on would otherwise keep the whole block from being reused."""
        return self.h[-1].copy(), self.c[-1].copy()


class _Blocks:
    """Big per-call buffers, handed out again once nothing refers to them.

    forward and backward need about 16 and 12 MB of arrays per call at B=64, T=32, D=200, H=256. Made afresh
    on every call, the freed memory goes back to the system and the next call's first writes fault it in
    again page by page: in a process running the LSTM alone (benchmarks/lstm_step.py, one thread), 3,600
    page faults per forward + backward, which took 62.5 ms against 54.0 ms with the blocks reused. A block
    is reused only when the pool's own reference is the last one: every NumPy view keeps the array that owns
    its memory alive (its `base`), so a cache, an output or a gradient the caller still holds is never
    written over, and a call finding every block in use gets a new one. KEEP blocks at most are kept, none
    larger than KEEP_BYTES: training's fit in it, and a server reading a batch of long prompts does not hold
    on to their memory."""

    KEEP = 2
    KEEP_BYTES = 32 << 20

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()  # serving threads may read prompts through one layer at once

    def take(self, count: int, dtype: np.dtype) -> np.ndarray:
        """A 1-d array of `count` numbers of `dtype`, contents undefined."""
        with self._lock:
            # 2 = the list's reference and getrefcount's argument: nothing else holds the block
            free = [k for k in range(len(self._blocks)) if sys.getrefcount(self._blocks[k]) == 2]
            for k in free:
                if self._blocks[k].size >= count and self._blocks[k].dtype == dtype:
                    return self._blocks[k][:count]
            block = np.empty(count, dtype=dtype)
            if block.nbytes <= self.KEEP_BYTES:
                if free:  # too small or of another dtype: the new block takes its place
                    self._blocks[free[0]] = block
                elif len(self._blocks) < self.KEEP:
                    self._blocks.append(block)
            return block


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))  # sign fix makes the distribution uniform over orthogonal matrices


class LSTM:
    """A single LSTM layer; stack several by feeding one layer's h as the next one's x.

    Initialisation (why): the input block W[:D] is Glorot-uniform per gate (fan-in D, fan-out H), which
    keeps the pre-activations at unit scale whatever D is; each of the four H x H recurrent blocks of W[D:] is
    a random orthogonal matrix, so repeated multiplication by it through time neither blows up nor shrinks the
    signal at the start of training (Saxe et al. 2014); biases are zero except the forget gate's, which is 1,
    so gradients flow through the cell over many steps from the first update (Jozefowicz et al. 2015).
    """

    def __init__(
        self, input_size: int, hidden_size: int, rng: np.random.Generator, dtype: type = np.float32
    ) -> None:
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"LSTM sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}"
            )
        self.input_size = D = int(input_size)
        self.hidden_size = H = int(hidden_size)
        self.dtype = np.dtype(dtype)
        W = np.empty((D + H, 4 * H), dtype=np.float64)
        limit = np.sqrt(6.0 / (D + H))
        W[:D] = rng.uniform(-limit, limit, size=(D, 4 * H))
        for gate in range(4):
            W[D:, gate * H : (gate + 1) * H] = _orthogonal(rng, H)
        self.W = W.astype(self.dtype)
        self.b = np.zeros(4 * H, dtype=self.dtype)
        self.b[H : 2 * H] = 1.0
        self.clear_inference()  # the serving copies of the weights are made by prepare_inference()
        self._forward_blocks = _Blocks()
        self._backward_blocks = _Blocks()

    def prepare_inference(self) -> None:
        """Keep the gate-scaled weights for serving, in both layouts (step's and forward's): a loaded model
        never changes, and making them afresh copied 1.8 MB of weights on every prompt (prefill) and scaled
        every step's pre-activations. Training must call clear_inference() first, since it updates W and b in
        place."""
        self.clear_inference()
        self._step_weights = self._scaled_weights()
        self._forward_weights = self._gate_major_weights()

    def clear_inference(self) -> None:
        self._step_weights: tuple[np.ndarray, np.ndarray] | None = None
        self._forward_weights: tuple[np.ndarray, np.ndarray] | None = None

    def _scaled_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """step()'s weights, (W_xb, W_h) multiplied by _gate_scale: W_xb (D+1, 4H) is W's input rows with the
        bias as an extra last row, W_h (H, 4H) its recurrent rows. The factors are 0.5 and 1, so scaling the
        weights instead of the pre-activations gives bit-identical pre-activations."""
        if self._step_weights is not None:
            return self._step_weights
        D = self.input_size
        scale = self._gate_scale()
        W_xb = np.concatenate([self.W[:D], self.b[None, :]])
        W_xb *= scale
        return W_xb, self.W[D:] * scale

    def _gate_major_weights(self, recurrent_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """forward()'s weights: the same scaled (W_xb, W_h), each gate's columns as its own matrix,
        W_xb4 (4, D+1, H) and W_h4 (4, H, H), so one batched matmul writes each gate as a contiguous block.
        Made in one pass over W each, scale and bias row applied on the way (the DropConnect mask, in
        training, is one more pass over W_h4)."""
        if recurrent_mask is None and self._forward_weights is not None:
            return self._forward_weights
        D, H = self.input_size, self.hidden_size
        scale = np.ones((4, 1, 1), dtype=self.dtype)
        scale[:SIGMOID_GATES] = 0.5
        W_xb4 = np.empty((4, D + 1, H), dtype=self.dtype)
        np.multiply(self.W[:D].reshape(D, 4, H).transpose(1, 0, 2), scale, out=W_xb4[:, :D])
        np.multiply(self.b.reshape(4, 1, H), scale, out=W_xb4[:, D:])
        W_h4 = np.empty((4, H, H), dtype=self.dtype)
        np.multiply(self.W[D:].reshape(H, 4, H).transpose(1, 0, 2), scale, out=W_h4)
        if recurrent_mask is not None:
            W_h4 *= recurrent_mask.reshape(H, 4, H).transpose(1, 0, 2)
        return W_xb4, W_h4

    def _gate_scale(self) -> np.ndarray:
        """(4H,) factors 0.5 on i, f, o and 1 on g applied to pre-activations, see the module docstring."""
        H = self.hidden_size
        scale = np.full(4 * H, 0.5, dtype=self.dtype)
        scale[SIGMOID_GATES * H :] = 1.0
        return scale

    def params(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b}

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        H = self.hidden_size
        return np.zeros((batch, H), dtype=self.dtype), np.zeros((batch, H), dtype=self.dtype)

    def _check_state(self, state: tuple[np.ndarray, np.ndarray] | None, batch: int, what: str) -> None:
        if state is None:
            return
        expected = (batch, self.hidden_size)
        for name, array in zip(("h", "c"), state, strict=True):
            if np.shape(array) != expected:
                raise ValueError(f"LSTM {what}: {name} has shape {np.shape(array)}, expected {expected}")

    def forward(
        self,
        x: np.ndarray,
        state: tuple[np.ndarray, np.ndarray] | None = None,
        recurrent_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, LSTMCache]:
        """x (B, T, D) -> h (B, T, H) and the cache; cache.final_state is (h_T, c_T) for carrying state on.
        recurrent_mask (H, 4H), when given, multiplies the recurrent weights W_h (DropConnect in training);
        backward then differentiates the masked weights.

        The returned h is a read-only view into the cache (backward needs it unchanged); copy it to modify."""
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"LSTM input: expected shape (batch, time, {self.input_size}), got {x.shape}")
        B, T, D = x.shape
        H = self.hidden_size
        self._check_state(state, B, "initial state")
        dtype = self.dtype
        # Pre-activations are computed already multiplied by _gate_scale (0.5 on i, f, o; folded into the
        # gate-major copies of the weights) so that ONE tanh over a step's gate blocks gives every gate.
        # x gets a constant 1 appended and W_x the bias as an extra row: the input GEMM then adds the bias for
        # free (instead of a separate pass over all T*B*4H gates), and in backward the same GEMM that gives
        # dW_x gives db in its last row.
        expected = (H, 4 * H)
        if recurrent_mask is not None and recurrent_mask.shape != expected:
            raise ValueError(f"LSTM recurrent mask: expected shape {expected}, got {recurrent_mask.shape}")
        one_row = B == 1 and recurrent_mask is None and self._step_weights is not None
        xs, gates, hs, cs, tanh_c = _carve(
            self._forward_blocks.take,
            dtype,
            (T, B, D + 1),
            (0 if one_row else 4, T, B, H),  # one row: the gates are the input GEMM's own rows
            (T + 1, B, H),
            (T + 1, B, H),
            (T, B, H),
        )
        np.copyto(xs[:, :, :D], x.transpose(1, 0, 2), casting="same_kind")
        xs[:, :, D] = 1.0
        # One row with the serving weights (a prompt read on its own): a step's (1, 4H) row in step()'s
        # layout is already gate-major, so each step is one plain vector-matrix product instead of four
        # (NumPy's batched matmul over the gates cost about 15% of a 160-token prompt's pass); the same
        # products, so the same numbers.
        if one_row:
            W_xb, W_h = self._step_weights  # type: ignore[misc]
            rows = np.matmul(xs.reshape(T, D + 1), W_xb)  # (T, 4H)
            gates = rows.reshape(T, 4, 1, H).transpose(1, 0, 2, 3)  # (4, T, 1, H) view for the cache
        else:
            W_xb4, W_h4 = self._gate_major_weights(recurrent_mask)
            # The input contribution for every step in one (batched) GEMM; the loop only adds h_{t-1} @ W_h.
            np.matmul(xs.reshape(T * B, D + 1), W_xb4, out=gates.reshape(4, T * B, H))
        if state is None:
            hs[0] = 0.0
            cs[0] = 0.0
        else:
            hs[0], cs[0] = state

        # Buffers reused by every step, so the loop allocates nothing.
        scratch = np.empty((B, H), dtype=dtype)
        if one_row:
            recurrent = np.empty((1, 4 * H), dtype=dtype)
            for t in range(T):
                np.matmul(hs[t], W_h, out=recurrent)
                rows[t] += recurrent[0]
                _activate(rows[t].reshape(4, 1, H), cs[t], cs[t + 1], tanh_c[t], hs[t + 1], scratch)
        else:
            recurrent = np.empty((4, B, H), dtype=dtype)
            for t in range(T):
                a = gates[:, t]  # (4, B, H): each gate a contiguous block
                np.matmul(hs[t], W_h4, out=recurrent)
                a += recurrent
                _activate(a, cs[t], cs[t + 1], tanh_c[t], hs[t + 1], scratch)

        out = hs[1:].transpose(1, 0, 2)
        out.flags.writeable = False
        return out, LSTMCache(x=xs, gates=gates, h=hs, c=cs, tanh_c=tanh_c, recurrent_mask=recurrent_mask)

    def backward(
        self,
        dh: np.ndarray,
        cache: LSTMCache,
        dstate: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Full BPTT. dh (B, T, H) is the loss gradient w.r.t. every output; dstate the gradient w.r.t. the
        final (h_T, c_T) when the state was used downstream (stateful truncated BPTT). Returns ({"W", "b"}
        gradients, dx (B, T, D), (dh0, dc0))."""
        T, B, D = cache.x.shape
        D -= 1  # cache.x carries the constant-1 bias column
        H = self.hidden_size
        if dh.shape != (B, T, H):
            raise ValueError(f"LSTM backward: dh has shape {dh.shape}, expected {(B, T, H)}")
        self._check_state(dstate, B, "backward dstate")
        dtype = self.dtype
        W_x = self.W[:D]
        # A contiguous copy of W_h^T (1 MB at H=256, made once per call, masked on the way): OpenBLAS's
        # per-step GEMM is about 25% slower when it reads the transposed view with the transpose flag
        # (measured: 11.6 vs 9.2 ms for the 32 steps of B=64, H=256).
        W_h_T, dgates, d_act, sigmoid_slope, dh_t, scratch, dW, dW_xb, dx_rows = _carve(
            self._backward_blocks.take,
            dtype,
            (4 * H, H),
            (T, B, 4 * H),
            (4, B, H),
            (SIGMOID_GATES, B, H),
            (B, H),
            (B, H),
            (D + H, 4 * H),
            (D + 1, 4 * H),
            (T * B, D),
        )
        if cache.recurrent_mask is None:
            np.copyto(W_h_T, self.W[D:].T)
        else:
            np.multiply(self.W[D:].T, cache.recurrent_mask.T, out=W_h_T)

        # Gradients w.r.t. the pre-activations, row-major: the per-step GEMM and the all-rows GEMMs read them
        # as plain (B, 4H) and (T*B, 4H) matrices.
        dh_next = np.zeros((B, H), dtype=dtype)  # gradient reaching h_t from step t+1
        dc = np.zeros((B, H), dtype=dtype)  # gradient reaching c_t from step t+1, then this step's total
        if dstate is not None:
            dh_next += dstate[0]
            dc += dstate[1]
        # d_act: gradients w.r.t. the activated gates, gate-major; it, sigmoid_slope, dh_t and scratch are
        # reused by every step, so the loop allocates nothing.
        dh_tm = dh.transpose(1, 0, 2)

        for t in range(T - 1, -1, -1):
            act = cache.gates[:, t]
            i, f, o, g = act
            tc = cache.tanh_c[t]
            # this step's rows of dgates seen gate-major: (4, B, H), each gate a strided (B, H) block
            da = dgates[t].reshape(B, 4, H).transpose(1, 0, 2)

            np.add(dh_tm[t], dh_next, out=dh_t)
            # dc_t += dh_t * o * (1 - tanh(c_t)^2)
            np.multiply(tc, tc, out=scratch)
            np.subtract(1.0, scratch, out=scratch)
            scratch *= o
            scratch *= dh_t
            dc += scratch
            # gradients w.r.t. the activated gates
            np.multiply(dc, g, out=d_act[0])
            np.multiply(dc, cache.c[t], out=d_act[1])
            np.multiply(dh_t, tc, out=d_act[2])
            np.multiply(dc, i, out=d_act[3])
            # back through the nonlinearities: sigmoid' = s (1 - s) on i, f, o; tanh' = 1 - g^2 on g
            sigmoids = act[:SIGMOID_GATES]
            np.subtract(1.0, sigmoids, out=sigmoid_slope)
            sigmoid_slope *= sigmoids
            np.multiply(d_act[:SIGMOID_GATES], sigmoid_slope, out=da[:SIGMOID_GATES])
            np.multiply(g, g, out=scratch)
            np.subtract(1.0, scratch, out=scratch)
            np.multiply(d_act[3], scratch, out=da[3])
            # to the previous step
            dc *= f
            np.matmul(dgates[t], W_h_T, out=dh_next)

        # Everything that does not feed the recursion: one GEMM over all T*B rows each.
        flat = dgates.reshape(T * B, 4 * H)
        np.matmul(cache.x.reshape(T * B, D + 1).T, flat, out=dW_xb)  # rows [:D] are dW_x, row D is db
        dW[:D] = dW_xb[:D]
        np.matmul(cache.h[:-1].reshape(T * B, H).T, flat, out=dW[D:])
        if cache.recurrent_mask is not None:
            dW[D:] *= cache.recurrent_mask
        db = dW_xb[D]
        np.matmul(flat, W_x.T, out=dx_rows)
        dx = dx_rows.reshape(T, B, D).transpose(1, 0, 2)
        return {"W": dW, "b": db}, dx, (dh_next, dc)

    def step(
        self, x: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Advance one token: x (B, D) -> h (B, H), new state (h, c). O(1) per token for generation."""
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"LSTM step input: expected shape (batch, {self.input_size}), got {x.shape}")
        B, D = x.shape
        self._check_state(state, B, "step state")
        h_prev, c_prev = self.initial_state(B) if state is None else state
        x = x.astype(self.dtype, copy=False)
        if self._step_weights is not None:  # serving: the scaled weights are kept (prepare_inference)
            W_xb, W_h = self._step_weights
            a = np.matmul(x, W_xb[:D])
            a += np.matmul(h_prev, W_h)
            a += W_xb[D]
        else:  # scaling (B, 4H) pre-activations is cheaper than scaling copies of the weights per step
            a = np.matmul(x, self.W[:D])
            a += np.matmul(h_prev, self.W[D:])
            a += self.b
            a *= self._gate_scale()
        H = self.hidden_size
        c = np.empty((B, H), dtype=self.dtype)
        tanh_c = np.empty((B, H), dtype=self.dtype)
        h = np.empty((B, H), dtype=self.dtype)
        _activate(
            a.reshape(B, 4, H).transpose(1, 0, 2), c_prev, c, tanh_c, h, np.empty((B, H), dtype=self.dtype)
        )
        return h, (h, c)


def _carve(
    take: Callable[[int, np.dtype], np.ndarray], dtype: np.dtype, *shapes: tuple[int, ...]
) -> list[np.ndarray]:
    """Arrays of the given shapes, all cut from one block that `take(count, dtype)` gives, each at an offset
    of a whole number of 16-number steps from the block's start (64 bytes in float32, a cache line)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + -(-size // 16) * 16)
    block = take(starts[-1], dtype)
    return [
        block[start : start + size].reshape(shape)
        for start, size, shape in zip(starts[:-1], sizes, shapes, strict=True)
    ]


def _activate(
    a: np.ndarray, c_prev: np.ndarray, c: np.ndarray, tanh_c: np.ndarray, h: np.ndarray, scratch: np.ndarray
) -> None:
    """Scaled pre-activations (4, B, H) in gate order -> the activated gates in place; writes c, tanh(c), h.

    a holds a_i/2, a_f/2, a_o/2 and a_g (see _gate_scale); sigmoid(x) = (1 + tanh(x / 2)) / 2."""
    np.tanh(a, out=a)
    sigmoids = a[:SIGMOID_GATES]
    sigmoids *= 0.5
    sigmoids += 0.5
    i, f, o, g = a
    np.multiply(f, c_prev, out=c)  # f * c_{t-1}
    np.multiply(i, g, out=scratch)  # i * g
    c += scratch
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)  # o * tanh(c)
