"""Choose the LSTM + token n-gram mixture (models/ngram.py) on the validation tail, never the held-out text.

The LSTM and a Kneser-Ney n-gram make different mistakes (the n-gram remembers exact phrases and names it has
counted; the LSTM generalises across contexts), so interpolating their distributions over the same vocabulary
is a classic, honest gain: P = λ·P_LSTM + (1 − λ)·P_KN is still a distribution, served as it is measured.

Selection, on the validation tail the network was early-stopped on (the last 5% of the training chapters,
training/fit.py): an n-gram of each candidate order is fitted on the training stream *without* that tail
(the data the network was fitted on, so the n-gram is not scored on text it counted), and the order and λ
with the lowest validation cross-entropy win. The served n-gram is then refitted on all training chapters
(the tail included: it is the text nearest the held-out chapters); the held-out chapters are never read.
"""

from __future__ import annotations

import math

import numpy as np

from models.network import Network
from models.ngram import KneserNey, Mixture
from training.evaluate import held_out_metrics
from training.fit import validation_size

ORDERS = (2, 3, 4)
# λ from 0.02 up: the LSTM's softmax gives every word some probability, so a mixture with λ > 0 never calls a
# held-out token impossible, whatever the n-gram has (not) counted.
WEIGHTS = np.round(np.linspace(0.02, 1.0, 50), 2)


def choose_mixture(
    network: Network, token_ids: np.ndarray, split_index: int, orders: tuple[int, ...] = ORDERS
) -> tuple[Mixture, dict]:
    """The mixture with the lowest validation loss, and what was measured (for the manifest)."""
    token_ids = np.asarray(token_ids, dtype=np.int64)
    training = token_ids[:split_index]
    size = validation_size(len(training))
    fitted, validation = training[:-size], training[-size:]
    vocab = network.config.vocab_size
    lstm_log_p = held_out_metrics(network, np.concatenate([fitted[-1:], validation]))["lstm"]["log_probs"]
    lstm_p = np.exp(lstm_log_p)
    measured: dict[str, dict] = {}
    best: tuple[float, int, float] | None = None
    for order in orders:
        if (vocab + 1) ** order >= 2**63:  # keys would overflow int64: a vocabulary this large stops lower
            continue
        ngram = KneserNey.fit(fitted + 1, vocab + 1, order)
        ngram_p = 2.0 ** ngram.log2_probs(fitted[len(fitted) - (order - 1) :] + 1, validation + 1)
        losses = [-float(np.mean(np.log(w * lstm_p + (1.0 - w) * ngram_p))) for w in WEIGHTS]
        k = int(np.argmin(losses))
        measured[str(order)] = {
            "ngram_nats": -float(np.mean(np.log(ngram_p))),
            "best_lstm_weight": float(WEIGHTS[k]),
            "mixture_nats": losses[k],
        }
        if best is None or losses[k] < best[0]:
            best = (losses[k], order, float(WEIGHTS[k]))
    assert best is not None
    loss, order, weight = best
    mixture = Mixture(KneserNey.fit(training + 1, vocab + 1, order), weight)
    report = {
        "order": order,
        "lstm_weight": weight,
        "chosen_on": f"validation: the last {size} tokens of the training chapters (never the held-out ones)",
        "validation_tokens": int(size),
        "validation_lstm_nats": -float(np.mean(lstm_log_p)),
        "validation_mixture_nats": loss,
        "validation_gain_bits_per_token": (-float(np.mean(lstm_log_p)) - loss) / math.log(2),
        "orders": measured,
        "ngram_fitted_on": "all training chapters",
    }
    return mixture, report
