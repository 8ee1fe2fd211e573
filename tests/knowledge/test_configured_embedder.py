"""`Knowledge.configured_embedder`: what a promotion in a serving process builds other models'
embedders from. It is the configured model's, whatever model serves (an adapter's embedder maps
queries; handing that on would map them twice), and it reuses the model already loaded."""

from __future__ import annotations

import numpy as np

from knowledge.tuning import promotion, registry
from knowledge.tuning.train import Adapter


def test_the_configured_embedder_is_the_base_one_whatever_serves(make_settings):
    from knowledge.service import Knowledge

    kn = Knowledge(make_settings())  # no shared embedder: as `lore serve` builds it
    try:
        check(kn)
    finally:
        kn.close()


def check(kn) -> None:
    serving = kn.embedder
    assert kn.configured_embedder is serving  # serving the configured model: the same object

    record = registry.create_run(kn.settings, "adapter")
    weight = np.roll(np.eye(384, dtype=np.float32), 1, axis=1)  # a permutation: queries move
    Adapter(weight, np.zeros(384, dtype=np.float32)).save(registry.adapter_file(kn.settings, record.id))
    record.gate = registry.Gate(passed=True)
    registry.save(kn.settings, record)
    promotion.promote(kn.settings, record.id)
    assert kn.follow(force=True) and kn.view.model == record.id

    question = "how many leave days do I get?"
    mapped = np.asarray(kn.embedder.query_model.get_query_embedding(question))
    plain = np.asarray(kn.configured_embedder.query_model.get_query_embedding(question))
    assert kn.configured_embedder is serving
    assert not np.allclose(mapped, plain)
    assert np.allclose(plain, serving.query_model.get_query_embedding(question))
