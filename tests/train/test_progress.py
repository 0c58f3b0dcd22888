"""A network's progress bar shows one speed, tqdm's, averaged over the epoch like the
epoch's summary line (not beside a second, differently measured one)."""

from __future__ import annotations

import re

import numpy as np

from chainrule.models import TwoLayerNet


def test_the_epoch_bar_shows_one_speed(capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 20)).astype(np.float32)
    TwoLayerNet(hidden_size=8, epochs=1, batch_size=50, verbose=True, random_state=0).fit(
        X, np.arange(2000) % 3
    )
    err = capsys.readouterr().err
    bars = [
        line for line in err.replace("\r", "\n").splitlines() if "img/s" in line and "|" in line
    ]
    assert bars, err
    for line in bars:
        assert len(re.findall(r"img/s|img_s", line)) == 1, line
