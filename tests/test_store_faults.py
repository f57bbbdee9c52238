"""A full disk and a read-only data directory, for real: a writer runs in its own mount namespace
on a tiny tmpfs (or a read-only bind mount) and meets ENOSPC / EROFS from the kernel. It must get a
one-line StoreError, and everything it had stored before must still be there, intact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import json, os, sqlite3, sys
    from pathlib import Path
    from PIL import Image
    from reasoner.store import Actor, DrawRequest, NewCandidate, Store, StoreError, png_bytes

    data_dir, mode = Path(sys.argv[1]), sys.argv[2]
    actor = Actor("fault-test", "tiny", "hf")
    store = Store.open(data_dir) if mode == "fill" else Store(data_dir)

    def picture(k):
        image = Image.frombytes("RGB", (48, 48), os.urandom(48 * 48 * 3))  # incompressible
        return png_bytes(image, {"seed": k})

    acked, error = [], None
    try:
        for k in range(10_000):
            drawn = store.draw(actor, DrawRequest("a red circle", None, {"n": 1}, [NewCandidate(k, picture(k))]))
            acked.append(drawn.draw_id)
            if mode == "fill":
                store.prefer(actor, drawn.draw_id, "pick", [0])
    except StoreError as caught:
        error = str(caught)
    conn = sqlite3.connect(f"file:{store.db_path}?immutable=1" if mode == "ro" else store.db_path, uri=True)
    result = {
        "error": error,
        "acked": acked,
        "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
        "draws": [row[0] for row in conn.execute("SELECT id FROM draws")],
        "history": len(store.recent_turns()),  # reading still works
    }
    print(json.dumps(result))
    """
)


def in_namespace(script: str) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed, so no private mount can be made")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(REPO)},
    )


def run_writer(script: str) -> dict:
    done = in_namespace(script)
    if done.returncode != 0 and (
        "Operation not permitted" in done.stderr or "permission denied" in done.stderr.lower()
    ):
        pytest.skip(f"no private mounts here ({done.stderr.strip().splitlines()[0]})")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_full_disk_is_a_clear_error_and_keeps_what_was_stored(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = run_writer(f"mount -t tmpfs -o size=384k tmpfs {data} && exec {sys.executable} -c '{WRITER}' {data} fill")
    assert (
        result["error"] is not None
        and "is full" in result["error"]
        and "nothing of this action was saved" in result["error"]
    )
    assert len(result["acked"]) >= 1  # it stored some before the disk filled
    assert result["integrity"] == "ok"
    assert set(result["acked"]) <= set(result["draws"])


def test_a_read_only_data_dir_is_a_clear_error_and_keeps_what_was_stored(tmp_path):
    from PIL import Image

    from reasoner.store import Actor, DrawRequest, NewCandidate, Store, png_bytes

    data = tmp_path / "data"
    store = Store.open(data)
    before = store.draw(
        Actor("before", "tiny", "hf"),
        DrawRequest(
            "a red circle", None, {"n": 1}, [NewCandidate(0, png_bytes(Image.new("RGB", (8, 8)), {"seed": 0}))]
        ),
    )
    result = run_writer(
        f"mount --bind {data} {data} && mount -o remount,bind,ro {data} && "
        f"exec {sys.executable} -c '{WRITER}' {data} ro"
    )
    assert result["error"] is not None and "read-only" in result["error"], result["error"]
    assert result["acked"] == [] and result["integrity"] == "ok" and result["draws"] == [before.draw_id]
    assert result["history"] == 1
    assert Store.open(data).draw_info(before.draw_id).candidates[0].seed == 0  # still there, still writable after
