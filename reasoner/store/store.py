"""The preference store: SQLite in WAL mode under the data directory, one transaction per action.

    store = Store.open("studio-data")
    actor = Actor(who="anon-1a2b", model="shapes", engine="hf")
    thought = store.think(actor, "a circle the color of the sky", "Plan: blue circle @ top-left")
    drawn = store.draw(actor, DrawRequest(prompt, plan, settings, candidates, turn_id=thought.turn_id))
    store.prefer(actor, drawn.draw_id, "pick", [2])

Every action opens its own connection, writes in one `BEGIN IMMEDIATE ... COMMIT` and returns only
after the commit: what a caller was told is stored survives a crash of the process at any moment
(`synchronous=FULL` keeps it through a power cut too). Image files are written, whole, before the
rows that name them. A failed action rolls back completely and raises StoreError or
PreferenceError with one line for a person; earlier rows are never touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import queries
from .errors import PreferenceError, StoreError, store_error, writable
from .images import put_image
from .records import (
    Actor,
    DrawInfo,
    DrawRef,
    DrawRequest,
    ReflectionInfo,
    ReflectionRef,
    ThinkRef,
    TurnState,
    TurnSummary,
)
from .schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION

DB_NAME = "studio.sqlite3"
BUSY_TIMEOUT_MS = 10_000
PREFERENCE_KINDS = ("pick", "rank", "all_bad")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME

    @classmethod
    def open(cls, data_dir: str | Path) -> Store:
        """The store in `data_dir`, created with its schema if new."""
        store = cls(Path(data_dir).expanduser().resolve())
        try:
            store.data_dir.mkdir(parents=True, exist_ok=True)
            with store._connection() as conn:
                conn.execute("PRAGMA journal_mode=WAL")  # persistent: later connections inherit it
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{store.db_path} was written by a newer version (schema {version})")
                if version == 0:
                    conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
                    version = SCHEMA_VERSION
                for older in range(version, SCHEMA_VERSION):  # each step one transaction
                    conn.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[older]} PRAGMA user_version={older + 1}; COMMIT;")
        except (sqlite3.Error, OSError) as error:
            raise store_error(error, store.data_dir) from None
        return store

    # -- connections ------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _action(self) -> Iterator[sqlite3.Connection]:
        """One action, one transaction: all of it is stored, or none of it."""
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except (sqlite3.Error, OSError) as error:
            raise store_error(error, self.data_dir) from None

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._open_for_reading()
        except sqlite3.Error as error:
            raise store_error(error, self.data_dir) from None
        try:
            yield conn
        except sqlite3.Error as error:
            raise store_error(error, self.data_dir) from None
        finally:
            conn.close()

    def _open_for_reading(self) -> sqlite3.Connection:
        """A reading connection; on a read-only data directory (where SQLite cannot make the WAL's
        side files) the database is opened immutable, so history still shows while writes fail."""
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if writable(self.data_dir):
                raise
            return sqlite3.connect(f"file:{self.db_path}?immutable=1", uri=True, isolation_level=None)

    # -- actions: each one transaction ------------------------------------------------------------

    def think(self, actor: Actor, prompt: str, plan: str) -> ThinkRef:
        """A new turn for `prompt` with the model's plan."""
        with self._action() as conn:
            turn_id = _new_turn(conn, actor, prompt)
            plan_id = _insert(
                conn, "plans", turn_id=turn_id, text=plan, source="model", who=actor.who, created_at=now()
            )
        return ThinkRef(turn_id, plan_id)

    def draw(self, actor: Actor, request: DrawRequest, owner: str | None = None) -> DrawRef:
        """Record a draw or redraw: the plan as drawn (a person's edit is a new row), its pictures.
        With `owner` set, the turn and reflection it continues must be `owner`'s."""
        stored = [put_image_or_fail(self.data_dir, c.png) for c in request.candidates]
        with self._action() as conn:
            turn_id = _turn_for(conn, actor, request.turn_id, request.prompt, owner)
            reflection_id = _reflection_for(conn, actor, turn_id, request)
            plan_id = (
                None if request.plan is None else _plan_for(conn, actor, turn_id, request.plan, request.reflection_id)
            )
            draw_id = _insert(
                conn,
                "draws",
                turn_id=turn_id,
                plan_id=plan_id,
                reflection_id=reflection_id,
                settings=json.dumps(request.settings, sort_keys=True),
                model=actor.model,
                engine=actor.engine,
                who=actor.who,
                created_at=now(),
            )
            for index, (candidate, image) in enumerate(zip(request.candidates, stored)):
                conn.execute(
                    "INSERT OR IGNORE INTO images (hash, path, bytes, created_at) VALUES (?, ?, ?, ?)",
                    (image.hash, image.path, image.bytes, now()),
                )
                own_plan = None if candidate.plan is None else _model_plan_for(conn, actor, turn_id, candidate.plan)
                _insert(
                    conn,
                    "candidates",
                    draw_id=draw_id,
                    idx=index,
                    seed=candidate.seed,
                    image_hash=image.hash,
                    plan_id=own_plan,
                )
            candidates = queries.candidates_of(conn, draw_id)
        return DrawRef(turn_id, draw_id, plan_id, reflection_id, candidates)

    def reflect(self, actor: Actor, draw_id: int, index: int, text: str, revised_plan: str | None) -> ReflectionRef:
        """The model's reflection on candidate `index` (0-based) of a draw, and its revised plan."""
        with self._action() as conn:
            draw = queries.draw_info(conn, draw_id)
            if not 0 <= index < len(draw.candidates):
                raise PreferenceError(
                    f"draw {draw_id} has candidates 1 to {len(draw.candidates)}; there is no {index + 1}"
                )
            reflection_id = _insert(
                conn,
                "reflections",
                turn_id=draw.turn_id,
                candidate_id=draw.candidates[index].id,
                text=text,
                source="model",
                who=actor.who,
                created_at=now(),
            )
            revised_id = None
            if revised_plan is not None:
                revised_id = _insert(
                    conn,
                    "plans",
                    turn_id=draw.turn_id,
                    text=revised_plan,
                    source="model",
                    reflection_id=reflection_id,
                    who=actor.who,
                    created_at=now(),
                )
        return ReflectionRef(draw.turn_id, reflection_id, revised_id)

    def prefer(self, actor: Actor, draw_id: int, kind: str, ranking: list[int]) -> int:
        """A person's verdict on a draw: `ranking` holds 0-based candidate indices, best first."""
        with self._action() as conn:
            count = len(queries.draw_info(conn, draw_id).candidates)
            check_verdict(kind, ranking, count)
            return _insert(
                conn,
                "preferences",
                draw_id=draw_id,
                kind=kind,
                ranking=json.dumps(ranking),
                who=actor.who,
                created_at=now(),
            )

    def compare(self, actor: Actor, base_draw_id: int, tuned_draw_id: int, owner: str | None = None) -> int:
        """A side-by-side of two draws of one prompt, base model against tuned; decided later."""
        with self._action() as conn:
            for draw_id in (base_draw_id, tuned_draw_id):
                queries.draw_info(conn, draw_id, owner)
            return _insert(
                conn,
                "comparisons",
                base_draw_id=base_draw_id,
                tuned_draw_id=tuned_draw_id,
                who=actor.who,
                created_at=now(),
            )

    def decide(self, comparison_id: int, winner: str, owner: str | None = None) -> None:
        """The person's pick between base and tuned: 'base', 'tuned' or 'same'."""
        if winner not in ("base", "tuned", "same"):
            raise PreferenceError(f"winner {winner!r}: one of base, tuned, same")
        with self._action() as conn:
            row = conn.execute("SELECT who FROM comparisons WHERE id = ?", (comparison_id,)).fetchone()
            if row is None or not queries.owned(row[0], owner):
                raise PreferenceError(f"comparison {comparison_id} does not exist")
            conn.execute(
                "UPDATE comparisons SET winner = ?, decided_at = ? WHERE id = ?", (winner, now(), comparison_id)
            )

    # -- reads ------------------------------------------------------------------------------------

    # `owner` (None: anyone) narrows a read to one person's turns; another's id reads as missing.

    def draw_info(self, draw_id: int, owner: str | None = None) -> DrawInfo:
        with self._reading() as conn:
            return queries.draw_info(conn, draw_id, owner)

    def reflection_info(self, reflection_id: int, owner: str | None = None) -> ReflectionInfo:
        with self._reading() as conn:
            return queries.reflection_info(conn, reflection_id, owner)

    def turn_prompt(self, turn_id: int, owner: str | None = None) -> str:
        """The prompt of turn `turn_id`; PreferenceError if it does not exist (or is not `owner`'s)."""
        with self._reading() as conn:
            return queries.turn_prompt(conn, turn_id, owner)

    def recent_turns(self, limit: int = 50, who: str | None = None) -> list[TurnSummary]:
        with self._reading() as conn:
            return queries.recent_turns(conn, limit, who)

    def turn_state(self, turn_id: int, who: str | None = None) -> TurnState:
        with self._reading() as conn:
            return queries.turn_state(conn, turn_id, who)

    def counts(self) -> dict[str, int]:
        with self._reading() as conn:
            return queries.counts(conn)

    def plan_source(self, turn_id: int | None, text: str, prompt: str, owner: str | None = None) -> str:
        """ "model" if the model wrote exactly `text` in turn `turn_id` and that turn is of `prompt`
        (and `owner`'s, when set): it is drawn as written. Anything else is a person's plan."""
        if turn_id is None:
            return "person"
        with self._reading() as conn:
            row = conn.execute(
                "SELECT t.who FROM plans pl JOIN turns t ON t.id = pl.turn_id JOIN prompts p ON p.id = t.prompt_id"
                " WHERE pl.turn_id = ? AND pl.text = ? AND pl.source = 'model' AND p.text = ? LIMIT 1",
                (turn_id, text, prompt),
            ).fetchone()
        return "model" if row is not None and queries.owned(row[0], owner) else "person"

    def keep_image(self, png: bytes) -> Path:
        """Write a picture now (to show it before its draw is recorded); its absolute path."""
        return self.data_dir / put_image_or_fail(self.data_dir, png).path

    def image_file(self, relative: str) -> Path:
        return self.data_dir / relative

    @contextmanager
    def read_connection(self) -> Iterator[sqlite3.Connection]:
        """A plain connection for exports, checks and tests."""
        with self._reading() as conn:
            yield conn


# -- helpers inside one transaction ---------------------------------------------------------------


def put_image_or_fail(data_dir: Path, png: bytes):
    try:
        return put_image(data_dir, png)
    except OSError as error:
        raise store_error(error, data_dir) from None


def check_verdict(kind: str, ranking: list[int], count: int) -> None:
    if kind not in PREFERENCE_KINDS:
        raise PreferenceError(f"verdict {kind!r} is not one of {', '.join(PREFERENCE_KINDS)}")
    if len(set(ranking)) != len(ranking):
        raise PreferenceError("a ranking names each candidate at most once")
    outside = [i + 1 for i in ranking if not 0 <= i < count]
    if outside:
        raise PreferenceError(f"candidate {outside[0]} does not exist: this draw has 1 to {count}")
    if kind == "pick" and len(ranking) != 1:
        raise PreferenceError("a pick names exactly one candidate")
    if kind == "rank" and len(ranking) < min(2, count):
        raise PreferenceError("a ranking names at least two candidates, best first")
    if kind == "all_bad" and ranking:
        raise PreferenceError("'all bad' names no candidate")


def _insert(conn: sqlite3.Connection, table: str, **values) -> int:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    return conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values())).lastrowid


def _new_turn(conn: sqlite3.Connection, actor: Actor, prompt: str) -> int:
    conn.execute("INSERT OR IGNORE INTO prompts (text, created_at) VALUES (?, ?)", (prompt, now()))
    prompt_id = conn.execute("SELECT id FROM prompts WHERE text = ?", (prompt,)).fetchone()[0]
    return _insert(
        conn, "turns", prompt_id=prompt_id, who=actor.who, model=actor.model, engine=actor.engine, created_at=now()
    )


def _turn_for(conn: sqlite3.Connection, actor: Actor, turn_id: int | None, prompt: str, owner: str | None) -> int:
    """`turn_id` if it is a turn of `prompt`; a new turn otherwise (no turn yet, or a new prompt)."""
    if turn_id is not None and queries.turn_prompt(conn, turn_id, owner) == prompt:
        return turn_id
    return _new_turn(conn, actor, prompt)


def _plan_for(conn: sqlite3.Connection, actor: Actor, turn_id: int, text: str, reflection_id: int | None) -> int:
    """The plan row for `text`: an existing plan of the turn, or a person's edit of the latest one."""
    same = conn.execute(
        "SELECT id FROM plans WHERE turn_id = ? AND text = ? ORDER BY id DESC LIMIT 1", (turn_id, text)
    ).fetchone()
    if same is not None:
        return same[0]
    edited_from = None
    if reflection_id is not None:  # editing a revised plan: it changed the reflection's proposal
        edited_from = queries.revised_plan_id(conn, reflection_id)
    if edited_from is None:
        edited_from = queries.latest_plan_id(conn, turn_id)
    root = None if reflection_id is None else queries.root_reflection_id(conn, reflection_id)
    return _insert(
        conn,
        "plans",
        turn_id=turn_id,
        text=text,
        source="person",
        edited_from=edited_from,
        reflection_id=root,
        who=actor.who,
        created_at=now(),
    )


def _model_plan_for(conn: sqlite3.Connection, actor: Actor, turn_id: int, text: str) -> int:
    """The row of a plan the model wrote for a varied candidate: the turn's own row for the same
    text (the same layout sampled twice, or the plan Think wrote), else a new model plan."""
    same = conn.execute(
        "SELECT id FROM plans WHERE turn_id = ? AND text = ? AND source = 'model' ORDER BY id LIMIT 1", (turn_id, text)
    ).fetchone()
    if same is not None:
        return same[0]
    return _insert(conn, "plans", turn_id=turn_id, text=text, source="model", who=actor.who, created_at=now())


def _reflection_for(conn: sqlite3.Connection, actor: Actor, turn_id: int, request: DrawRequest) -> int | None:
    """The reflection a redraw follows: the stored one, or a person's edit of it when the text changed."""
    if request.reflection_id is None:
        return None
    row = conn.execute(
        "SELECT turn_id, text, candidate_id FROM reflections WHERE id = ?", (request.reflection_id,)
    ).fetchone()
    if row is None:
        raise PreferenceError(f"reflection {request.reflection_id} does not exist")
    if row[0] != turn_id:
        raise PreferenceError(f"reflection {request.reflection_id} belongs to turn {row[0]}, not to turn {turn_id}")
    if request.reflection_text is None or request.reflection_text == row[1]:
        return request.reflection_id
    return _insert(
        conn,
        "reflections",
        turn_id=turn_id,
        candidate_id=row[2],
        text=request.reflection_text,
        source="person",
        edited_from=request.reflection_id,
        who=actor.who,
        created_at=now(),
    )
