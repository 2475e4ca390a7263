"""The two index engines keep and find the same things: Qdrant Edge (embedded, the default) and the
Qdrant client (used for a Qdrant server; its in-memory mode stands in for one here). Same checks on
both: replacing a file never doubles it, forgetting it leaves nothing, file and attribute filters,
dense and hybrid search. Edge also outlives a reopen and refuses a second process."""

import asyncio
import sys
import textwrap

import pytest
from fake_llm import embed
from qdrant_client import AsyncQdrantClient

from ossabus.retrieval.index import open_index
from ossabus.retrieval.index_client import ClientIndex
from ossabus.retrieval.index_edge import EdgeIndex, IndexInUse

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
STORE = "vs_engine"
DOCS = {
    "file-a": ["the falcon drill warranty lasts 24 months", "charge the falcon battery for two hours"],
    "file-b": ["pancakes need flour milk and eggs", "fry pancakes in butter until golden"],
    "file-c": ["the heron saw cuts oak and pine", "heron saw blades last a year"],
}
ATTRS = {
    "file-a": {"kind": "manual", "year": 2024},
    "file-b": {"kind": "recipe", "year": 2019},
    "file-c": {"kind": "manual", "year": 2021},
}


@pytest.fixture(params=["edge", "client"])
async def index(request, tmp_path):
    engine = (
        EdgeIndex.open(tmp_path / "edge") if request.param == "edge" else ClientIndex(AsyncQdrantClient(":memory:"))
    )
    for file_id, texts in DOCS.items():
        await engine.replace_file(STORE, file_id, texts, [embed(t, 64) for t in texts], {"attributes": ATTRS[file_id]})
    yield engine
    await engine.close()


async def found(index, query, *, files=None, attributes=None, hybrid=True, limit=10):
    hits = await index.search(STORE, query, embed(query, 64), files, attributes, limit, hybrid)
    return [(h.payload["file_id"], h.payload["chunk"]) for h in hits]


@pytest.mark.parametrize("hybrid", [True, False])
async def test_the_best_passage_comes_first(index, hybrid):
    assert (await found(index, "falcon drill warranty", hybrid=hybrid))[0] == ("file-a", 0)
    assert (await found(index, "pancakes butter golden", hybrid=hybrid))[0] == ("file-b", 1)


async def test_replacing_a_file_never_doubles_it(index):
    texts = ["the falcon drill warranty now lasts 36 months"]
    await index.replace_file(STORE, "file-a", texts, [embed(texts[0], 64)], {"attributes": ATTRS["file-a"]})
    hits = await found(index, "falcon drill warranty months")
    assert [h for h in hits if h[0] == "file-a"] == [("file-a", 0)]
    assert len(hits) == 5  # 1 + 2 + 2 chunks


async def test_a_forgotten_file_and_a_forgotten_store_leave_nothing(index):
    await index.forget(STORE, "file-a")
    assert all(f != "file-a" for f, _ in await found(index, "falcon drill warranty"))
    await index.forget(STORE)
    assert await found(index, "pancakes") == []
    await index.forget(STORE)  # forgetting what is gone is no error


async def test_file_filters(index):
    assert {f for f, _ in await found(index, "warranty", files=["file-b", "file-c"])} == {"file-b", "file-c"}
    assert await found(index, "warranty", files=[]) == []


@pytest.mark.parametrize(
    ("attributes", "files"),
    [
        ({"type": "eq", "key": "kind", "value": "manual"}, {"file-a", "file-c"}),
        ({"type": "ne", "key": "kind", "value": "manual"}, {"file-b"}),
        ({"type": "gte", "key": "year", "value": 2021}, {"file-a", "file-c"}),
        ({"type": "lt", "key": "year", "value": 2021}, {"file-b"}),
        ({"type": "in", "key": "kind", "value": ["recipe", "other"]}, {"file-b"}),
        ({"type": "nin", "key": "kind", "value": ["recipe"]}, {"file-a", "file-c"}),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "kind", "value": "manual"},
                    {"type": "gt", "key": "year", "value": 2022},
                ],
            },
            {"file-a"},
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "kind", "value": "recipe"},
                    {"type": "gt", "key": "year", "value": 2022},
                ],
            },
            {"file-a", "file-b"},
        ),
    ],
)
async def test_attribute_filters(index, attributes, files):
    assert {f for f, _ in await found(index, "warranty pancakes saw", attributes=attributes)} == files


async def test_an_unknown_store_has_nothing(index):
    assert await index.search("vs_none", "x", embed("x", 64), None, None, 5, True) == []


async def test_the_embedded_index_outlives_a_reopen_and_refuses_a_second_process(tmp_path):
    folder = tmp_path / "edge"
    first = EdgeIndex.open(folder)
    await first.replace_file(STORE, "file-a", DOCS["file-a"], [embed(t, 64) for t in DOCS["file-a"]], {})
    with pytest.raises(IndexInUse, match="another process"):
        EdgeIndex.open(folder)  # a second opener in this process is refused like another process
    other = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            from pathlib import Path
            from ossabus.retrieval.index_edge import EdgeIndex, IndexInUse
            try:
                EdgeIndex.open(Path({str(folder)!r}))
            except IndexInUse as refused:
                print("refused:", refused)
            """),
        ],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed = (await asyncio.wait_for(other.communicate(), 60))[0].decode()
    assert "refused: the embedded index" in printed, printed
    await first.close()
    again = EdgeIndex.open(folder)
    hits = await again.search(STORE, "falcon", embed("falcon drill warranty", 64), None, None, 5, False)
    assert [h.payload["chunk"] for h in hits][:1] == [0]
    await again.close()


async def test_an_index_of_the_clients_local_mode_is_carried_into_the_embedded_engine(tmp_path):
    """ossabus kept its embedded index in the client's local mode before Qdrant Edge: an upgrade
    carries every chunk over once and loses no indexed file."""
    old = ClientIndex(AsyncQdrantClient(path=str(tmp_path / "qdrant")))
    for file_id, texts in DOCS.items():
        await old.replace_file(STORE, file_id, texts, [embed(t, 64) for t in texts], {"attributes": ATTRS[file_id]})
    before = await found(old, "falcon drill warranty")
    await old.close()

    index = await open_index(tmp_path, None)
    carried = await found(index, "falcon drill warranty")
    assert carried[0] == before[0] == ("file-a", 0)
    assert sorted(carried) == sorted(before)  # every chunk; ties may fall in another order
    recipes = await found(index, "x", attributes={"type": "eq", "key": "kind", "value": "recipe"})
    assert sorted(recipes) == [("file-b", 0), ("file-b", 1)]  # payloads came along
    await index.close()
    assert not (tmp_path / "qdrant").exists()
    assert (tmp_path / "qdrant.migrated-to-edge").is_dir()
    again = await open_index(tmp_path, None)  # once: nothing is carried twice
    assert len(await found(again, "falcon drill warranty")) == len(before)
    await again.close()
