"""The SQLite schema of the preference store (docs/architecture.md, "The preference store").

A turn is one prompt's way through think -> draw -> pick -> reflect -> redraw. Every plan and
reflection is a row, the model's and a person's edit alike (`source`), and an edit points at what it
was edited from, so the pairs (model wrote, person changed it to) stay as training data. Candidates
point at images by content hash; each image file exists once under the data directory. A varied
draw (each candidate thought its own plan) has no plan of its own; each candidate points at its plan.
"""

SCHEMA_VERSION = 3

COMPARISONS = """
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    base_draw_id INTEGER NOT NULL REFERENCES draws(id),    -- the same prompt, settings and seeds
    tuned_draw_id INTEGER NOT NULL REFERENCES draws(id),   -- drawn by the tuned model (draws.model)
    winner TEXT CHECK (winner IN ('base', 'tuned', 'same')),  -- NULL until the person says
    who TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_at TEXT
);
"""

# What takes a store of version k to k + 1; a new store gets SCHEMA whole.
MIGRATIONS = {
    1: "ALTER TABLE candidates ADD COLUMN plan_id INTEGER REFERENCES plans(id);",
    2: COMPARISONS,
}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY,
    prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    who TEXT NOT NULL,              -- an anonymous session id, or the user name when auth is on
    model TEXT NOT NULL,
    engine TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY,
    turn_id INTEGER NOT NULL REFERENCES turns(id),
    text TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('model', 'person')),
    edited_from INTEGER REFERENCES plans(id),              -- a person's edit: the plan it changed
    reflection_id INTEGER REFERENCES reflections(id),      -- a revised plan: the reflection it came from
    who TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reflections (
    id INTEGER PRIMARY KEY,
    turn_id INTEGER NOT NULL REFERENCES turns(id),
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),  -- the picture reflected on
    text TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('model', 'person')),
    edited_from INTEGER REFERENCES reflections(id),
    who TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS draws (
    id INTEGER PRIMARY KEY,
    turn_id INTEGER NOT NULL REFERENCES turns(id),
    plan_id INTEGER REFERENCES plans(id),                  -- NULL: drawn from the prompt alone
    reflection_id INTEGER REFERENCES reflections(id),      -- set for a redraw
    settings TEXT NOT NULL,                                -- JSON of DrawSettings
    model TEXT NOT NULL,
    engine TEXT NOT NULL,
    who TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    hash TEXT PRIMARY KEY,                                 -- sha256 of the PNG file's bytes
    path TEXT NOT NULL,                                    -- relative to the data directory
    bytes INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    draw_id INTEGER NOT NULL REFERENCES draws(id),
    idx INTEGER NOT NULL,                                  -- 0-based; people see idx + 1
    seed INTEGER NOT NULL,
    image_hash TEXT NOT NULL REFERENCES images(hash),
    plan_id INTEGER REFERENCES plans(id),                  -- a varied candidate's own plan; NULL: the draw's
    UNIQUE (draw_id, idx)
);
CREATE TABLE IF NOT EXISTS preferences (
    id INTEGER PRIMARY KEY,
    draw_id INTEGER NOT NULL REFERENCES draws(id),
    kind TEXT NOT NULL CHECK (kind IN ('pick', 'rank', 'all_bad')),
    ranking TEXT NOT NULL,       -- JSON list of candidate idx, best first: [best] for a pick, [] for all bad
    who TEXT NOT NULL,
    created_at TEXT NOT NULL
);
{COMPARISONS}CREATE INDEX IF NOT EXISTS turns_by_who ON turns(who, id);
CREATE INDEX IF NOT EXISTS plans_by_turn ON plans(turn_id, id);
CREATE INDEX IF NOT EXISTS draws_by_turn ON draws(turn_id, id);
CREATE INDEX IF NOT EXISTS reflections_by_turn ON reflections(turn_id, id);
CREATE INDEX IF NOT EXISTS preferences_by_draw ON preferences(draw_id, id);
"""
