"""Versioned retriever models, and which one serves.

Every run gets `data_dir/models/<id>/` with a `model.json` (`ModelRecord`) and what the trainer
wrote: `st/` (a sentence-transformers model, `full`) or `adapter.npz` (`adapter`: a linear map
`knowledge.tuning.train.Adapter`: `weight` (d_out x d_in) and `bias`, applied to query vectors,
then re-normalised; documents are embedded as before). The configured embedding model and
collection are the implicit model `base`.

A `full` model gets its own collection, `<qdrant.collection>-<id>`; an adapter uses its
parent's (the documents are unchanged). The calibrated `abstain_below` travels in the record
and replaces the built-in floor unless `retrieval.abstain_below` is set in lore.toml.

The pointer to the serving model:
- Embedded (`qdrant.url` empty): `data_dir/models/serving.json`, written to a temporary file and
  `os.replace`d, so a reader sees the old id or the new one, never half a file.
- Server (`qdrant.url`): a Qdrant alias, shared by every machine. Qdrant cannot rename a collection
  nor create an alias over an existing one, and the configured collection is a real one until its
  grace ends, so the alias is a second name: `<collection>--serving--<id>` -> the collection that
  model serves from (an adapter's alias points at its parent's collection). A switch deletes the old
  alias and creates the new one in one `update_collection_aliases` call, which Qdrant applies
  atomically; readers list aliases, and with none serve `base` from the configured collection. So a
  reader never queries a name that is being replaced, and never errors during the first switch.
  The model files are read from `data_dir/models/<id>/` by every process that answers: in server
  mode `data_dir/models` must be shared (one volume mounted by every worker and chat process),
  or copied to each machine before a promotion; a process that cannot find the files of the model
  the alias names keeps serving its current model and logs why.

Running processes follow a switch by polling the pointer (`pointer_stamp`, at most every
`POLL_SECONDS`; see `knowledge/service.py`). Promotion and rollback are `knowledge/tuning/promotion.py`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import ConfigDict
from pydantic import BaseModel, Field

from config.settings import EmbeddingSettings, Settings
from knowledge.embeddings import Embedder, EmbedIdentity

log = logging.getLogger(__name__)

BASE = "base"  # the configured embedding model and collection
POLL_SECONDS = 5.0  # how often a running process looks at the pointer (a stat, or one alias listing)
ALIAS_MARK = "--serving--"

Method = Literal["base", "full", "adapter"]
Status = Literal["candidate", "serving", "retired", "refused"]


class Gate(BaseModel):
    passed: bool = False
    reasons: list[str] = Field(default_factory=list)


class ModelRecord(BaseModel):
    """`model.json`: what a model is, what it was trained on, how it measured, whether it serves."""

    id: str
    kind: Literal["retriever"] = "retriever"
    method: Method
    parent: str | None = None  # the model it was trained from (`base` for the configured one)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    pairs: dict[str, int] = Field(default_factory=dict)  # training pairs per kind
    before: dict[str, dict[str, float]] = Field(default_factory=dict)  # set -> {recall@5, mrr}
    after: dict[str, dict[str, float]] = Field(default_factory=dict)
    gate: Gate = Field(default_factory=Gate)
    abstain_below: float | None = None  # calibrated for this model
    status: Status = "candidate"
    collection: str  # where its documents are: its own (full), its parent's (adapter)
    built: bool = False  # its collection is complete (full sync of every source done)
    replaced: str | None = None  # the model it replaced when it last started serving (rollback)
    served_at: datetime | None = None
    retired_at: datetime | None = None
    extra: dict[str, Any] = Field(default_factory=dict)  # anything else the trainer wants kept


class UnknownModel(KeyError):
    pass


# -- where things are ------------------------------------------------------------


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def model_dir(settings: Settings, model_id: str) -> Path:
    return models_dir(settings) / model_id


def st_dir(settings: Settings, model_id: str) -> Path:
    """Where a `full` model's sentence-transformers files go."""
    return model_dir(settings, model_id) / "st"


def adapter_file(settings: Settings, model_id: str) -> Path:
    """Where an `adapter` model's map goes (`knowledge.tuning.train.Adapter.save`)."""
    return model_dir(settings, model_id) / "adapter.npz"


def own_collection(settings: Settings, model_id: str) -> str:
    return settings.qdrant.collection if model_id == BASE else f"{settings.qdrant.collection}-{model_id}"


# -- records ---------------------------------------------------------------------


def _base_record(settings: Settings) -> ModelRecord:
    return ModelRecord(
        id=BASE,
        method="base",
        collection=settings.qdrant.collection,
        built=True,
        status="serving",
        created_at=datetime.fromtimestamp(0, UTC),
    )


def create_run(
    settings: Settings, method: Literal["full", "adapter"], *, parent: str | None = None
) -> ModelRecord:
    """A new candidate's directory and record; `parent` defaults to the serving model. The trainer
    then writes `st_dir` or `adapter_file`, and the caller fills in the figures and `save`s."""
    parent = parent or serving_id(settings)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    model_id = f"{stamp}-{secrets.token_hex(2)}"
    collection = own_collection(settings, model_id) if method == "full" else load(settings, parent).collection
    record = ModelRecord(id=model_id, method=method, parent=parent, collection=collection)
    model_dir(settings, model_id).mkdir(parents=True)
    save(settings, record)
    return record


def save(settings: Settings, record: ModelRecord) -> None:
    path = model_dir(settings, record.id) / "model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, record.model_dump_json(indent=2))


def load(settings: Settings, model_id: str) -> ModelRecord:
    path = model_dir(settings, model_id) / "model.json"
    if not path.exists():
        if model_id == BASE:
            return _base_record(settings)
        raise UnknownModel(f"no model {model_id!r} in {models_dir(settings)}")
    return ModelRecord.model_validate_json(path.read_text(encoding="utf-8"))


def runs(settings: Settings) -> list[ModelRecord]:
    """Every trained model, newest first (`base` not included)."""
    found = []
    root = models_dir(settings)
    for path in sorted(root.glob("*/model.json")) if root.exists() else []:
        if path.parent.name == BASE:
            continue
        try:
            found.append(ModelRecord.model_validate_json(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            log.warning("skipping %s: %s", path, exc)
    current = serving_id(settings)
    for record in found:  # the pointer is the truth, should a crash have left a status behind
        if record.id == current:
            record.status = "serving"
        elif record.status == "serving":
            record.status = "retired"
    return sorted(found, key=lambda r: r.created_at, reverse=True)


def refuse(settings: Settings, model_id: str, reasons: Sequence[str] = ()) -> ModelRecord:
    """Keep a candidate for inspection, never to serve."""
    record = load(settings, model_id)
    record.status = "refused"
    record.gate.passed = False
    record.gate.reasons = list(record.gate.reasons) + [r for r in reasons if r not in record.gate.reasons]
    save(settings, record)
    return record


def remove(settings: Settings, model_id: str) -> None:
    """Delete a model that is not serving (its files; its collection goes with `drop_expired`)."""
    if model_id in (BASE, serving_id(settings)):
        raise ValueError(f"{model_id} is serving or the base model")
    shutil.rmtree(model_dir(settings, model_id), ignore_errors=True)


def serving(settings: Settings) -> ModelRecord:
    record = load(settings, serving_id(settings))
    record.status = "serving"  # the pointer is the truth, should a crash have left a status behind
    return record


def previous(settings: Settings) -> ModelRecord | None:
    """What `rollback` would restore: the model the serving one replaced."""
    current = serving(settings)
    return load(settings, current.replaced) if current.replaced else None


# -- the pointer -----------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pointer_file(settings: Settings) -> Path:
    return models_dir(settings) / "serving.json"


class AliasPointer:
    """The server-mode pointer: the alias `<collection>--serving--<id>` (see the module's docstring).
    Takes any qdrant-client (a server's; tests use local mode, which has the same alias calls)."""

    def __init__(self, client: Any, collection: str) -> None:
        self.client = client
        self.prefix = f"{collection}{ALIAS_MARK}"

    def read(self) -> tuple[str, str] | None:
        """(model id, collection) of the serving model, or None (the base model, never switched)."""
        aliases = self.client.get_aliases().aliases
        found = sorted(
            (a.alias_name, a.collection_name) for a in aliases if a.alias_name.startswith(self.prefix)
        )
        if not found:
            return None
        if len(found) > 1:  # cannot happen through `write`; be deterministic if someone made one by hand
            log.warning("several serving aliases: %s; using the last", [name for name, _ in found])
        name, collection = found[-1]
        return name[len(self.prefix) :], collection

    def write(self, model_id: str, collection: str) -> None:
        from qdrant_client.http import models as qm

        actions: list[Any] = [
            qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=a.alias_name))
            for a in self.client.get_aliases().aliases
            if a.alias_name.startswith(self.prefix)
        ]
        actions.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=collection, alias_name=self.prefix + model_id)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=actions)


_alias_clients: dict[tuple[str, str], Any] = {}


def _alias_pointer(settings: Settings) -> AliasPointer:
    from qdrant_client import QdrantClient

    url = str(settings.qdrant.url)
    key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
    client = _alias_clients.get((url, key or ""))
    if client is None:
        client = QdrantClient(url=url, api_key=key, timeout=settings.qdrant.timeout)
        _alias_clients[(url, key or "")] = client
    return AliasPointer(client, settings.qdrant.collection)


def serving_id(settings: Settings) -> str:
    if settings.qdrant.url:
        found = _alias_pointer(settings).read()
        return found[0] if found else BASE
    path = _pointer_file(settings)
    if not path.exists():
        return BASE
    return str(json.loads(path.read_text(encoding="utf-8"))["model"])


def pointer_stamp(settings: Settings) -> Any:
    """Something that changes when the pointer does, cheap enough to ask every few seconds."""
    if settings.qdrant.url:
        return _alias_pointer(settings).read()
    try:
        st = os.stat(_pointer_file(settings))
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def switch_pointer(settings: Settings, record: ModelRecord) -> None:
    """Make `record` the serving model, atomically (the only place the pointer moves)."""
    if settings.qdrant.url:
        _alias_pointer(settings).write(record.id, record.collection)
        return
    path = _pointer_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"model": record.id, "collection": record.collection, "switched_at": datetime.now(UTC).isoformat()}
    _write_atomic(path, json.dumps(body))


# -- what a process serves -------------------------------------------------------


@dataclass(frozen=True)
class ServingView:
    """How to embed and where to search for one model."""

    model: str
    collection: str
    embedding: EmbeddingSettings  # `model` points at a full model's directory
    identity_name: str | None  # the name its collection records (None: the embedder's own)
    adapters: tuple[Path, ...] = ()  # applied to query vectors, in order
    abstain_below: float | None = None

    @property
    def tuned_embedder(self) -> bool:
        """Whether the embedder differs from the configured one (an injected one can't be shared)."""
        return self.identity_name is not None

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with this model's abstention floor, unless lore.toml sets one."""
        if self.abstain_below is None or settings.retrieval.abstain_below is not None:
            return settings
        retrieval = settings.retrieval.model_copy(update={"abstain_below": self.abstain_below})
        return settings.model_copy(update={"retrieval": retrieval})


def view_of(settings: Settings, record: ModelRecord) -> ServingView:
    """How `record` embeds (its own weights, or its parent's plus its adapter) and where it searches."""
    if record.method == "base":
        return ServingView(BASE, record.collection, settings.embedding, None, (), record.abstain_below)
    if record.method == "full":
        path = st_dir(settings, record.id)
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise FileNotFoundError(f"model {record.id}: no sentence-transformers files in {path}")
        embedding = settings.embedding.model_copy(update={"model": str(path)})
        return ServingView(
            record.id, record.collection, embedding, f"lore-tuned:{record.id}", (), record.abstain_below
        )
    parent = view_of(settings, load(settings, record.parent or BASE))
    path = adapter_file(settings, record.id)
    if not path.exists():
        raise FileNotFoundError(f"model {record.id}: no adapter in {path}")
    return ServingView(
        record.id,
        record.collection,
        parent.embedding,
        parent.identity_name,
        (*parent.adapters, path),
        record.abstain_below,
    )


def serving_view(settings: Settings) -> ServingView:
    return view_of(settings, serving(settings))


class AdapterEmbedding(BaseEmbedding):
    """Query vectors mapped by each adapter in turn, re-normalised; documents embedded as before."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    inner: Any
    maps: Any  # [knowledge.tuning.train.Adapter], applied in order

    @classmethod
    def load(cls, inner: BaseEmbedding, paths: Sequence[Path]) -> AdapterEmbedding:
        from knowledge.tuning.train import load_adapter

        return cls(
            inner=inner,
            maps=[load_adapter(path) for path in paths],
            model_name=f"{inner.model_name}+adapter",
            embed_batch_size=inner.embed_batch_size,
        )

    def map(self, vector: Sequence[float]) -> list[float]:
        from knowledge.tuning.train import apply_adapter

        out = np.asarray(vector, dtype=np.float32)
        for adapter in self.maps:
            out = apply_adapter(out, adapter)
        return [float(x) for x in out]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.map(self.inner.get_query_embedding(query))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        vector: list[float] = self.inner.get_text_embedding(text)
        return vector

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.inner.get_text_embedding_batch(texts)
        return vectors

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        vectors: list[list[float]] = self.inner.get_text_embedding_batch(texts, show_progress=show_progress)
        return vectors


def embedder_for(view: ServingView, base: Embedder | None = None) -> Embedder:
    """The embedder of `view`; `base` is an already loaded embedder of the configured model, reused
    when the view's weights are the configured ones."""
    from dataclasses import replace

    from knowledge.embeddings import build_embedder

    if base is not None and not view.tuned_embedder:
        inner = base
    else:
        inner = build_embedder(view.embedding)
        if view.identity_name is not None:
            inner.identity = EmbedIdentity(view.identity_name, inner.identity.dim)
    if not view.adapters:
        return inner
    documents = inner.index_model_factory
    return replace(
        inner,
        model=AdapterEmbedding.load(inner.model, view.adapters),
        # Documents go through the unmapped model (a sync's `document_model`).
        index_model_factory=documents if documents is not None else (lambda: inner.model),
        _index_model=None,
    )
