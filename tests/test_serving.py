"""HTTP serving: every endpoint and error case over real HTTP against ``tfrs-movies serve`` in a
subprocess on a free loopback port, and the web page in headless Chromium (Playwright)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import anyio
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from tfrs_movies.cli import main  # noqa: E402
from tfrs_movies.config import load_config  # noqa: E402
from tfrs_movies.recommend import Recommender  # noqa: E402
from tfrs_movies.serving import create_app, schemas  # noqa: E402
from tfrs_movies.serving.listing import Listing  # noqa: E402
from tfrs_movies.serving.schemas import MAX_BODY_BYTES, MAX_K  # noqa: E402
from tfrs_movies.train import train_and_evaluate  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(tempfile.gettempdir()) / "tfrs_movies_serving_page.png"
# At least 100 movies: evaluation asks for the top 100 of the catalogue.
SYNTHETIC = "synthetic:users=60,movies=120,ratings=3000,seed=0"


@pytest.fixture(scope="session")
def serving_run_dir(tmp_path_factory) -> Path:
    """A tiny trained run (~10 s)."""
    config = load_config(
        None,
        [
            f"data.source={SYNTHETIC}",
            "train.epochs=2",
            "train.batch_size=256",
            "eval.baselines=false",
            "train.tensorboard=false",
        ],
    )
    return Path(train_and_evaluate(config, tmp_path_factory.mktemp("run") / "run").run_dir)


@pytest.fixture(scope="session")
def recommender(serving_run_dir: Path):
    return Recommender.load(serving_run_dir)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(serving_run_dir: Path, tmp_path_factory):
    """``tfrs-movies serve RUN --port FREE`` in a subprocess; its URL once /health answers."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "tfrs_movies.cli", "serve", str(serving_run_dir)]
    command += ["--port", str(port), "--log-level", "warning"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited ({process.returncode}): {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health within 120 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def client(base_url: str):
    with httpx.Client(base_url=base_url, timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def users(client) -> list[str]:
    return client.get("/v1/users", params={"limit": 1000}).json()["user_ids"]


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def _assert_same_items(items: list[dict], records) -> None:
    """The server's items are the library's records: ids, order and counts exactly, scores
    to float32 precision (the server computes with one thread, this process with several, so
    sums may round differently in the last bit: 3.8145720958709717 vs 3.8145718574523926 once).
    """
    expected = [record.to_dict() for record in records]
    floats = ("retrieval_score", "predicted_rating")
    assert [{k: v for k, v in item.items() if k not in floats} for item in items] == [
        {k: v for k, v in item.items() if k not in floats} for item in expected
    ]
    for name in floats:
        got = [item[name] for item in items]
        want = [item[name] for item in expected]
        if None in want:
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6), name


def _check_items(items: list[dict], with_rating: bool) -> None:
    assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    for item in items:
        assert item["title"] and isinstance(item["title"], str)
        assert math.isfinite(item["retrieval_score"])
        if with_rating:
            assert math.isfinite(item["predicted_rating"])
        else:
            assert item["predicted_rating"] is None


# ------------------------------------------------------------------------------------ endpoints


def test_health(client, serving_run_dir):
    body = _ok(client.get("/health"))
    assert body["status"] == "ok" and body["model_loaded"] is True
    assert body["run_name"] == serving_run_dir.name
    assert body["versions"]["tensorflow"].startswith("2.20")
    assert body["versions"]["scann"]
    assert body["num_users"] == 60 and body["num_movies"] > 0
    assert body["max_k"] == MAX_K and body["max_body_bytes"] == MAX_BODY_BYTES


def test_users_are_listed_in_numeric_order(client, users):
    assert len(users) == 60
    assert users == sorted(users, key=int)
    page = _ok(client.get("/v1/users", params={"offset": 5, "limit": 3}))
    assert page["count"] == 60 and page["user_ids"] == users[5:8]


def test_user_recommendations_match_the_library(client, users, recommender):
    user = users[0]
    body = _ok(client.get(f"/v1/users/{user}/recommendations", params={"k": 5}))
    assert body["user_id"] == user and body["k"] == 5 and body["exclude_seen"] is True
    items = body["recommendations"]
    assert len(items) == 5
    _check_items(items, with_rating=True)
    _assert_same_items(items, recommender.recommend(user, k=5))
    user_row = recommender.user_ids.tolist().index(user)
    seen = {recommender.movie_ids[row] for row in recommender.seen_rows(user_row)}
    assert seen
    assert not seen & {item["movie_id"] for item in items}


def test_user_recommendations_options(client, users, recommender):
    user = users[1]
    with_seen = _ok(
        client.get(f"/v1/users/{user}/recommendations", params={"k": 20, "exclude_seen": "false"})
    )
    expected = recommender.recommend(user, k=20, exclude_seen=False)
    _assert_same_items(with_seen["recommendations"], expected)
    popular = _ok(client.get(f"/v1/users/{user}/recommendations", params={"min_ratings": 30}))
    assert all(item["num_ratings"] >= 30 for item in popular["recommendations"])
    nothing = _ok(client.get(f"/v1/users/{user}/recommendations", params={"min_ratings": 10**6}))
    assert nothing["recommendations"] == []
    top = _ok(client.get(f"/v1/users/{user}/recommendations", params={"k": MAX_K}))
    assert 0 < len(top["recommendations"]) <= MAX_K


def test_new_user_recommendations(client, recommender):
    ids = [str(m) for m in recommender.movie_ids[:3]]
    title = str(recommender.titles[3])
    ratings = {ids[0]: 5, ids[1]: 4.5, ids[2]: 0.5, title: 3}
    body = _ok(client.post("/v1/recommendations", json={"ratings": ratings, "k": 7}))
    assert body["k"] == 7
    assert [r["movie_id"] for r in body["rated"]] == [*ids, str(recommender.movie_ids[3])]
    assert body["rated"][3]["title"] == title and body["rated"][3]["rating"] == 3.0
    items = body["recommendations"]
    assert len(items) == 7
    _check_items(items, with_rating=True)
    assert not {r["movie_id"] for r in body["rated"]} & {i["movie_id"] for i in items}
    by_id = {ids[0]: 5, ids[1]: 4.5, ids[2]: 0.5, str(recommender.movie_ids[3]): 3}
    _assert_same_items(items, recommender.recommend_for_ratings(by_id, k=7))
    default_k = _ok(client.post("/v1/recommendations", json={"ratings": {ids[0]: 4}}))
    assert len(default_k["recommendations"]) == 10


def test_similar_movies_by_id_and_title(client, recommender):
    movie_id, title = str(recommender.movie_ids[0]), str(recommender.titles[0])
    body = _ok(client.get(f"/v1/movies/{movie_id}/similar", params={"k": 4}))
    assert body["movie"]["movie_id"] == movie_id and body["movie"]["title"] == title
    assert len(body["similar"]) == 4
    _check_items(body["similar"], with_rating=False)
    assert movie_id not in {item["movie_id"] for item in body["similar"]}
    _assert_same_items(body["similar"], recommender.similar_movies(movie_id, k=4))
    by_title = _ok(client.get(f"/v1/movies/{quote(title)}/similar", params={"k": 4}))
    assert by_title == body
    assert len(_ok(client.get(f"/v1/movies/{movie_id}/similar"))["similar"]) == 10


def test_similar_movies_by_query_take_ids_and_titles(client, recommender):
    """The query form answers exactly as the path form (same server), for ids and titles."""
    movie_id, title = str(recommender.movie_ids[1]), str(recommender.titles[1])
    by_path = _ok(client.get(f"/v1/movies/{movie_id}/similar", params={"k": 6}))
    for movie in (movie_id, title):
        by_query = _ok(client.get("/v1/movies/similar", params={"movie": movie, "k": 6}))
        assert by_query == by_path
    default_k = _ok(client.get("/v1/movies/similar", params={"movie": movie_id}))
    assert len(default_k["similar"]) == 10


def test_title_search(client, recommender):
    body = _ok(client.get("/v1/movies", params={"query": "  SYNTHETIC   movie 1 ", "limit": 5}))
    assert body["count"] > 5 and len(body["movies"]) == 5
    assert all("synthetic movie 1" in m["title"].lower() for m in body["movies"])
    counts = [m["num_ratings"] for m in body["movies"]]
    assert counts == sorted(counts, reverse=True)
    exact = _ok(client.get("/v1/movies", params={"query": str(recommender.titles[0])}))
    assert str(recommender.movie_ids[0]) in {m["movie_id"] for m in exact["movies"]}
    assert _ok(client.get("/v1/movies", params={"query": "no such film"})) == {
        "query": "no such film",
        "count": 0,
        "movies": [],
    }
    everything = _ok(client.get("/v1/movies"))
    assert everything["count"] == len(recommender.movie_ids) and len(everything["movies"]) == 20
    assert _ok(client.get("/v1/movies?query=synthetic+movie"))["query"] == "synthetic movie"


def test_docs_and_page_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn." not in docs.text and "https://" not in docs.text
    schema = _ok(client.get("/openapi.json"))
    assert {
        "/health",
        "/v1/users/{user_id}/recommendations",
        "/v1/recommendations",
        "/v1/movies/{movie_id}/similar",
        "/v1/movies/similar",
        "/v1/movies",
    } <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text
    # Similar movies through the query form, which carries titles with "/" too.
    assert "/v1/movies/similar?" in page.text and "}/similar" not in page.text


def test_concurrent_requests_agree(client, users):
    path = f"/v1/users/{users[2]}/recommendations"
    expected = _ok(client.get(path))
    answers, failures = [], []

    def ask():
        try:
            with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
                for _ in range(3):
                    answers.append(own.get(path).json())
                    own.post("/v1/recommendations", json={"ratings": {"1": 4}}).raise_for_status()
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert len(answers) == 36 and all(answer == expected for answer in answers)


# --------------------------------------------------------------------------------------- errors

BAD_REQUESTS = [
    # (id, method, path, request keyword arguments, status, text in detail)
    ("unknown user", "GET", "/v1/users/nobody/recommendations", {}, 404, "unknown user"),
    ("unknown movie", "GET", "/v1/movies/no-such-movie/similar", {}, 404, "unknown movie"),
    ("k zero", "GET", "/v1/users/{user}/recommendations?k=0", {}, 422, "k"),
    ("k over max", "GET", "/v1/users/{user}/recommendations?k=101", {}, 422, "100"),
    ("k not a number", "GET", "/v1/users/{user}/recommendations?k=ten", {}, 422, "integer"),
    ("k float", "GET", "/v1/users/{user}/recommendations?k=2.5", {}, 422, "integer"),
    ("bad boolean", "GET", "/v1/users/{user}/recommendations?exclude_seen=maybe", {}, 422, "bool"),
    ("negative min", "GET", "/v1/users/{user}/recommendations?min_ratings=-1", {}, 422, "0"),
    ("similar k over", "GET", "/v1/movies/{movie}/similar?k=1000", {}, 422, "100"),
    ("similar k zero", "GET", "/v1/movies/{movie}/similar?k=0", {}, 422, "k"),
    ("similar no movie", "GET", "/v1/movies/similar?k=3", {}, 422, "movie"),
    ("similar empty movie", "GET", "/v1/movies/similar?movie=", {}, 422, "movie"),
    ("similar unknown", "GET", "/v1/movies/similar?movie=no-such", {}, 404, "unknown movie"),
    ("similar query k", "GET", "/v1/movies/similar?movie={movie}&k=101", {}, 422, "100"),
    ("k NaN", "GET", "/v1/users/{user}/recommendations?k=nan", {}, 422, "integer"),
    ("k infinite", "GET", "/v1/users/{user}/recommendations?k=inf", {}, 422, "integer"),
    ("min NaN", "GET", "/v1/users/{user}/recommendations?min_ratings=nan", {}, 422, "integer"),
    ("search limit", "GET", "/v1/movies?limit=101", {}, 422, "limit"),
    ("search too long", "GET", "/v1/movies?query=" + "x" * 201, {}, 422, "200"),
    ("long user id", "GET", "/v1/users/" + "1" * 400 + "/recommendations", {}, 422, "300"),
    ("no route", "GET", "/v1/nothing", {}, 404, "Not Found"),
    ("wrong method", "DELETE", "/v1/recommendations", {}, 405, "Not Allowed"),
    (
        "unknown rated movie",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"no-such-movie": 4}}},
        404,
        "unknown movie",
    ),
    (
        "rating too high",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 5.5}}},
        422,
        "less than or equal to 5",
    ),
    (
        "rating too low",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 0.4}}},
        422,
        "greater than or equal to 0.5",
    ),
    (
        "rating NaN",
        "POST",
        "/v1/recommendations",
        {"content": '{"ratings": {"{movie}": NaN}}'},
        422,
        "finite",
    ),
    (
        "rating text",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": "great"}}},
        422,
        "number",
    ),
    (
        "rating numeric text",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": "4"}}},
        422,
        "valid number",
    ),
    (
        "rating boolean",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": True}}},
        422,
        "valid number",
    ),
    (
        "rating infinite",
        "POST",
        "/v1/recommendations",
        {"content": '{"ratings": {"{movie}": 1e999}}'},
        422,
        "finite",
    ),
    (
        "body k boolean",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4}, "k": True}},
        422,
        "integer",
    ),
    (
        "body min_ratings float",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4}, "min_ratings": 1.5}},
        422,
        "integer",
    ),
    ("no ratings", "POST", "/v1/recommendations", {"json": {"ratings": {}}}, 422, "at least 1"),
    ("ratings missing", "POST", "/v1/recommendations", {"json": {"k": 3}}, 422, "ratings"),
    (
        "body k over max",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4}, "k": 101}},
        422,
        "100",
    ),
    (
        "body k string",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4}, "k": "5"}},
        422,
        "integer",
    ),
    (
        "unknown field",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4}, "user": "1"}},
        422,
        "Extra inputs",
    ),
    (
        "same movie twice",
        "POST",
        "/v1/recommendations",
        {"json": {"ratings": {"{movie}": 4, "{title}": 3}}},
        422,
        "more than once",
    ),
    ("malformed JSON", "POST", "/v1/recommendations", {"content": '{"ratings": '}, 422, "JSON"),
    ("JSON array", "POST", "/v1/recommendations", {"json": [1, 2]}, 422, "object"),
    ("empty body", "POST", "/v1/recommendations", {}, 422, "body"),
    (
        "body too large",
        "POST",
        "/v1/recommendations",
        {"content": '{"ratings": {"x": 1}, "p": "' + "x" * MAX_BODY_BYTES + '"}'},
        413,
        "larger",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "text"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_clear_errors(
    client, users, recommender, method, path, kwargs, status, text
):
    values = {
        "{user}": users[0],
        "{movie}": str(recommender.movie_ids[0]),
        "{title}": str(recommender.titles[0]),
    }

    def fill(value):
        if isinstance(value, str):
            for key, replacement in values.items():
                value = value.replace(key, replacement)
            return value
        if isinstance(value, dict):
            return {fill(k): fill(v) for k, v in value.items()}
        return value

    kwargs = {key: fill(value) for key, value in kwargs.items()}
    if "content" in kwargs:
        kwargs["headers"] = {"Content-Type": "application/json"}
    response = client.request(method, fill(path), **kwargs)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and text.lower() in detail.lower()


def test_chunked_body_over_limit_is_rejected(client):
    def chunks():
        yield b'{"ratings": {"1": 4}, "pad": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    response = client.post(
        "/v1/recommendations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger" in response.json()["detail"]
    assert client.get("/health").status_code == 200  # the server is still fine


def test_body_just_under_limit_is_read(client, recommender):
    movie = str(recommender.movie_ids[0])
    body = json.dumps({"ratings": {movie: 4}, "k": 3})
    body = body[:-1] + " " * (MAX_BODY_BYTES - len(body)) + "}"
    assert len(body.encode()) == MAX_BODY_BYTES
    response = client.post(
        "/v1/recommendations", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------- app and CLI


def test_create_app_takes_a_loaded_recommender(recommender):
    app = create_app(recommender)

    async def health():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as local:
            return (await local.get("/health")).json()

    assert anyio.run(health)["run_name"] == Path(recommender.run_dir).name


def test_request_batcher_runs_one_turns_items_together_by_key():
    """Items submitted in one turn of the loop go to run_many together, grouped by key, at
    most max_batch at a time; a failed batch is retried item by item, so that only the bad
    item's request fails; an item whose request was cancelled is not computed."""
    from tfrs_movies.serving.batching import RequestBatcher

    calls = []

    def run_many(key, items):
        calls.append((key, list(items)))
        if "bad" in items:
            raise ValueError("one bad item")
        return [f"{key}:{item}" for item in items]

    def run_one(key, item):
        if item == "bad":
            raise KeyError(item)
        return f"{key}:{item} alone"

    async def scenario():
        batcher = RequestBatcher(run_many, run_one, max_batch=2)
        first = await asyncio.gather(
            *(batcher.submit(key, item) for key, item in [("a", 1), ("a", 2), ("b", 3), ("a", 4)])
        )
        mixed = await asyncio.gather(
            batcher.submit("c", "good"), batcher.submit("c", "bad"), return_exceptions=True
        )
        # A request cancelled before its batch ran: the batch computes the others only.
        cancelled = asyncio.ensure_future(batcher.submit("d", "gone"))
        kept = asyncio.ensure_future(batcher.submit("d", "kept"))
        await asyncio.sleep(0)  # both have submitted
        cancelled.cancel()
        return first, mixed, await kept, batcher.batch_sizes

    first, mixed, kept, sizes = asyncio.run(scenario())
    assert first == ["a:1", "a:2", "b:3", "a:4"]
    assert mixed[0] == "c:good alone" and isinstance(mixed[1], KeyError)
    assert kept == "d:kept"
    assert calls == [
        ("a", [1, 2]),
        ("a", [4]),
        ("b", [3]),
        ("c", ["good", "bad"]),
        ("d", ["kept"]),
    ]
    assert sizes == [2, 1, 1, 1]  # the failed batch is not counted
    with pytest.raises(ValueError, match="max_batch"):
        RequestBatcher(run_many, run_one, max_batch=0)


def test_request_batcher_keeps_each_event_loops_items_to_itself():
    """Two threads, each with its own event loop, submitting at the same time: each loop's
    batch holds only its own items and every item gets its own result (no lost wake-ups)."""
    from tfrs_movies.serving.batching import RequestBatcher

    both_submitted = threading.Barrier(2)

    def run_many(key, items):
        time.sleep(0.05)  # the other thread submits meanwhile
        return [item * 10 for item in items]

    batcher = RequestBatcher(run_many, lambda key, item: item * 10)
    results = {}

    def serve(first: int):
        async def submit_three():
            tasks = [asyncio.ensure_future(batcher.submit("k", first + i)) for i in range(3)]
            await asyncio.sleep(0)
            both_submitted.wait(5)
            return await asyncio.gather(*tasks)

        results[first] = asyncio.run(submit_three())

    threads = [threading.Thread(target=serve, args=(first,)) for first in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert results == {0: [0, 10, 20], 100: [1000, 1010, 1020]}
    assert sorted(batcher.batch_sizes) == [3, 3]


def test_new_people_asked_at_once_are_answered_in_one_batch_as_if_alone(recommender, exact_search):
    """Concurrent POST /v1/recommendations on one app: their fold-ins run batched, and each
    answer is the one the library gives that person alone (scores within the fold-in's
    tolerance; exact search, see the exact_search fixture); a bad request among them gets its
    own error."""
    exact_search(recommender)
    app = create_app(recommender)
    ids = [str(m) for m in recommender.movie_ids[:9]]
    people = [{ids[0]: 5.0}, {ids[1]: 4.0, ids[2]: 2.5}, {ids[3]: 3.0, ids[4]: 5.0, ids[5]: 4.5}]
    people += [{ids[6]: 1.0, ids[7]: 4.0, ids[8]: 5.0, ids[0]: 2.0}]

    async def ask_together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as local:
            bodies = [{"ratings": person, "k": 5} for person in people]
            bodies.append({"ratings": {"no such movie": 4.0}, "k": 5})
            return await asyncio.gather(
                *(local.post("/v1/recommendations", json=body) for body in bodies)
            )

    sizes_before = list(app.state.new_people.batch_sizes)  # the warm-up's
    answers = anyio.run(ask_together)
    assert answers[-1].status_code == 404 and "no such movie" in answers[-1].json()["detail"]
    assert max(app.state.new_people.batch_sizes[len(sizes_before) :]) >= 2
    for person, answer in zip(people, answers, strict=False):
        items = _ok(answer)["recommendations"]
        alone = recommender.recommend_for_ratings(person, k=5)
        assert [i["movie_id"] for i in items] == [r.movie_id for r in alone]
        np.testing.assert_allclose(
            [(i["retrieval_score"], i["predicted_rating"]) for i in items],
            [(r.retrieval_score, r.predicted_rating) for r in alone],
            atol=2e-3,
        )


def test_search_matches_a_plain_scan(recommender):
    listing = Listing(recommender)
    titles = [str(title) for title in recommender.titles]
    queries = ["", "movie", "MOVIE 1", "  synthetic   movie 2 ", "e 1", "no such film", "1"]
    queries += [str(t)[2:7] for t in recommender.titles[:5]]
    for query in queries:
        needle = " ".join(query.split()).casefold()
        expected = [
            row
            for row in listing.popular_rows
            if needle in " ".join(titles[row].split()).casefold()
        ]
        count, rows = listing.search(query, 7)
        assert (count, rows) == (len(expected), expected[:7]), query


def test_answers_match_their_response_models(client, users, recommender):
    movie = str(recommender.movie_ids[0])
    checks = [
        (schemas.Health, client.get("/health")),
        (schemas.UserList, client.get("/v1/users")),
        (schemas.UserRecommendations, client.get(f"/v1/users/{users[0]}/recommendations")),
        (
            schemas.NewUserRecommendations,
            client.post("/v1/recommendations", json={"ratings": {movie: 4}}),
        ),
        (schemas.SimilarMovies, client.get(f"/v1/movies/{movie}/similar")),
        (schemas.SimilarMovies, client.get("/v1/movies/similar", params={"movie": movie})),
        (schemas.MovieSearch, client.get("/v1/movies", params={"query": "movie"})),
    ]
    for model, response in checks:
        body = _ok(response)
        # Every field present with its type, and nothing else: the payload is the model's dump.
        assert model.model_validate(body, strict=True).model_dump(mode="json") == body


def test_serve_reports_a_bad_run_dir_or_busy_port(tmp_path, serving_run_dir, capsys):
    assert main(["serve", str(tmp_path / "missing"), "--port", str(_free_port())]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(serving_run_dir), "--port", str(port)]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(serving_run_dir), "--port", "70000"])
    with pytest.raises(SystemExit):
        main(["serve", str(serving_run_dir), "--workers", "0"])


def _children(pid: int) -> set[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in children.read_text().split()} if children.exists() else set()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_two_workers_serve_and_stop_together(serving_run_dir, tmp_path):
    """``--workers 2``: the address is printed once both workers listen, both answer, and
    SIGTERM to the parent stops them (no worker is left running)."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "tfrs_movies.cli", "serve", str(serving_run_dir)]
    command += ["--port", str(port), "--workers", "2", "--log-level", "warning"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "serving " not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert "2 worker processes" in log_path.read_text()
        children = _children(process.pid)  # the two workers and multiprocessing's tracker
        workers = {
            pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }
        assert len(workers) == 2
        # The kernel spreads new connections over both workers (all 20 on one: p = 2^-19).
        for _ in range(20):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as fresh:
                assert fresh.get("/health").status_code == 200
        process.terminate()
        assert process.wait(timeout=30) == 0

        def running(pid: int) -> bool:
            status = Path(f"/proc/{pid}/status")
            try:
                return "zombie" not in status.read_text().lower()
            except OSError:  # gone
                return False

        deadline = time.monotonic() + 10
        while any(running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if running(pid)]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_load_test_script_runs_against_the_server(base_url, capsys):
    """A small run of scripts/benchmarks/load_test.py: every request answered, the sums add up."""
    path = Path(__file__).parents[1] / "scripts" / "benchmarks" / "load_test.py"
    spec = importlib.util.spec_from_file_location("load_test", path)
    load_test = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = load_test  # its dataclasses look their module up there
    spec.loader.exec_module(load_test)
    arguments = [base_url, "--clients", "4", "--requests", "10", "--json"]
    assert load_test.main(arguments) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["errors"], summary["not_sent"]) == (40, 0, 0)
    assert sum(kind["count"] for kind in summary["per_endpoint"].values()) == 40
    assert 0 < summary["overall"]["p50_ms"] <= summary["overall"]["p99_ms"]
    assert load_test.main(["http://example.com:80"]) == 2  # loopback only


# ------------------------------------------------------------------------------------- browser


def test_page_in_a_browser(base_url, users):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    requested, problems = [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.set_default_timeout(15_000)
            page.goto(base_url)
            page.wait_for_selector("body[data-ready=true]")
            assert "60 users" in page.inner_text("#run-info")

            # A known user's recommendations, with titles.
            page.fill("#user-id", users[0])
            page.click("#user-go")
            page.wait_for_selector("#user-results tbody tr")
            assert page.locator("#user-results tbody tr").count() == 10
            assert "Synthetic Movie" in page.inner_text("#user-results")

            # Search, rate two movies, recommendations for the new viewer.
            page.fill("#search-query", "synthetic movie 1")
            page.click("#search-go")
            page.wait_for_selector("#search-results tbody tr")
            rows = page.locator("#search-results tbody tr")
            assert rows.count() == 20
            rated_titles = []
            for index, stars in ((0, "5"), (1, "4.5"), (2, "1")):
                row = rows.nth(index)
                rated_titles.append(row.locator("a.title").inner_text())
                row.locator("select").select_option(stars)
                row.locator("button.rate").click()
            assert page.locator("#my-ratings li").count() == 3
            page.click("#new-go")
            page.wait_for_selector("#new-results tbody tr")
            new_titles = page.locator("#new-results tbody a.title").all_inner_texts()
            assert len(new_titles) == 10 and not set(new_titles) & set(rated_titles)
            assert "From your 3 ratings" in page.inner_text("#new-results")

            # Similar movies for a title in the search results.
            rows.nth(0).locator("button.similar").click()
            page.wait_for_selector("#similar-results tbody tr")
            assert rated_titles[0] in page.inner_text("#similar-results")
            assert page.locator("#similar-results tbody tr").count() == 10
            assert any("/v1/movies/similar?movie=" in url for url in requested), requested

            # An error is shown, not swallowed.
            page.fill("#user-id", "nobody")
            page.click("#user-go")
            page.wait_for_selector("#message:has-text('unknown user')")
            page.fill("#user-id", users[0])
            page.click("#user-go")
            page.wait_for_selector("#message", state="hidden")

            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    assert all(url.startswith(base_url) for url in requested), requested
    # The deliberate 404 above logs one console error; nothing else may fail.
    assert [p for p in problems if "404" not in p] == [], problems
