"""The KRaft cluster id handed to StorageTool must never read as an option."""

import uuid

from streams import apachekafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8 encodes to "-" as the first URL-safe base64 character: the draw CI once hit.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(apachekafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = apachekafka.new_cluster_id()
    assert cluster_id == "AQEBAQEBAQEBAQEBAQEBAQ"
    assert len(cluster_id) == 22


def test_random_cluster_ids_are_well_formed():
    ids = {apachekafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(i.startswith("-") or len(i) != 22 for i in ids)
