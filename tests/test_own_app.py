"""Your own app (servers/own_app.py, apps/own_app.py): the worked example under the preset's servers, every answer
checked against the requests file or the first correct answer, and every bad setting refused in one line before
anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import UsageError
from core.host import ROOT
from lab import bundle, config
from servers.matrix import load
from servers.own_app import OwnApp, read_requests, with_own
from tests.test_runner import lab_run, only_run

EXAMPLE = ROOT / "apps" / "example"
SHORT = ["--repeats", "2", "--duration", "1", "--warmup", "0.5", "--users", "8", "--referee-seconds", "1",
         "--sweep-seconds", "0", "--no-calibrate"]  # fmt: skip
COUNTER = """
count = 0


async def app(scope, receive, send):
    global count
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    count += 1
    body = str(count).encode()  # a different answer every time: after the first, every one is wrong
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def test_the_example_app_joins_the_matrix_with_its_requests() -> None:
    own = OwnApp.read("shop:app", EXAMPLE)
    assert own.scenarios == ["item", "search", "order"] and own.requirements == []
    order = own.requests[2]
    assert (order.method, order.status, order.send_type) == ("POST", 201, "application/json")
    assert order.expect is not None and order.expect.body == b'{"item_id":3,"quantity":2,"total_cents":7998}'
    assert own.requests[0].expect is None  # same = true: recorded from the first answer
    m = with_own(load(), own)
    assert m.apps["own"].target == "apps.own_app:app" and m.scenario("item") == own.requests[0]
    c = config.parse(["--own-app", "shop:app", "--own-code", str(EXAMPLE), "--server", "granian"], load())
    assert c.keys == ["granian-asyncio-hyper-w1-own", "granian-uvloop-hyper-w1-own"] and c.scenarios == own.scenarios


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[[request]]\nname = "a"\npath = "/"\nsame = true\nheaders = 1\n', "unknown keys ['headers']"),
        ('[[request]]\nname = "a"\npath = "/"\n', "give either expect = BODY or same = true"),
        ('[[request]]\nname = "a"\npath = "/"\nsame = true\nexpect = "x"\n', "give either expect = BODY or same"),
        ('[[request]]\nname = "a"\npath = "x"\nsame = true\n', "path 'x' must start with /"),
        ('[[request]]\nname = "a"\npath = "/.lab/ready"\nsame = true\n', "must start with / (not /.lab/)"),
        ('[[request]]\nname = "a"\npath = "/"\nstatus = 500\nsame = true\n', "status 500"),
        ('[[request]]\nname = "a"\npath = "/"\nmethod = "POST"\nbody = "x"\nsame = true\n', "needs its content_type"),
        ('[[request]]\nname = "A b"\npath = "/"\nsame = true\n', "name 'A b'"),
        (
            '[[request]]\nname = "a"\npath = "/"\nsame = true\n[[request]]\nname = "a"\npath = "/"\nsame = true\n',
            "the name 'a' is used twice",
        ),
        ("[[request]\n", "not TOML"),
        ('title = "x"\n', "one [[request]] table per request"),
    ],
)
def test_a_bad_requests_file_is_refused_in_one_line(tmp_path: Path, text: str, said: str) -> None:
    file = tmp_path / "requests.toml"
    file.write_text(text)
    with pytest.raises(UsageError) as raised:
        read_requests(file)
    assert said in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_app_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give MODULE:ATTRIBUTE"):
        OwnApp.read("shop", EXAMPLE)
    with pytest.raises(UsageError, match="no such folder"):
        OwnApp.read("shop:app", tmp_path / "gone")
    with pytest.raises(UsageError, match="requests file"):
        OwnApp.read("shop:app", tmp_path)
    for argv, said in (
        (["--own-app", "shop:nothing"], "does not import from"),
        (["--own-app", "no_such_module:app"], "No module named 'no_such_module'"),
        (["--own-app", "shop:app", "--requests", str(tmp_path / "none.toml")], "is not there"),
    ):
        results = tmp_path / "results"
        done = lab_run(*argv, "--own-code", str(EXAMPLE), "--server", "granian", *SHORT, results=results)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert said in line, line
        assert not results.exists() or not any(results.iterdir())


def test_your_app_every_answer_checked(tmp_path: Path) -> None:
    """The example shop on granian: its answers correct (the file's and the first answer's); a request
    whose stated body is wrong fails its repeats; an app whose answer changes counts every later answer an error."""
    requests = tmp_path / "requests.toml"
    requests.write_text(
        (EXAMPLE / "requests.toml").read_text()
        + '\n[[request]]\nname = "wrong"\npath = "/items/4"\nstatus = 200\nexpect = \'{"id":3}\'\n'
    )
    cells = ["granian-uvloop-hyper-w1-own"]  # two servers' cells: test_the_example_app_joins_the_matrix…
    done = lab_run(
        "--own-app", "shop:app", "--own-code", str(EXAMPLE), "--requests", str(requests),
        *[a for c in cells for a in ("--cell", c)], *SHORT, results=tmp_path / "results",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr  # every cell ran; the wrong request's repeats failed
    run = bundle.load_bundle(only_run(tmp_path / "results"))
    assert run.manifest.config.own is not None and run.manifest.config.own.target == "shop:app"
    for key in cells:
        for scenario in ("item", "search", "order"):
            mine = [r for r in run.repeats if (r.key, r.scenario) == (key, scenario)]
            loads = [r.load for r in mine if r.load is not None]  # a window cut short fails a repeat, not the point
            assert loads and all(x.ok > 100 and not x.errors for x in loads), (key, scenario, mine[0].failure)
        item = [r for r in run.repeats if (r.key, r.scenario) == (key, "item")]
        # wrk referees it too, right after the point's first ok repeat (on a machine whose hypervisor steals a third
        # of a CPU, both 1-s windows can come out short after their retries: then there is none to follow)
        assert any(r.referee for r in item) or not any(r.ok for r in item), [r.failure for r in item]
        wrong = [r for r in run.repeats if (r.key, r.scenario) == (key, "wrong")]
        assert wrong and all(not r.ok and "not the expected" in (r.failure or "") for r in wrong)
    report = (only_run(tmp_path / "results") / "report.html").read_text()
    summary = (only_run(tmp_path / "results") / "summary.md").read_text()
    assert "your app (shop:app)" in report and "granian · uvloop, wrong: every repeat (2) failed" in summary

    counter = tmp_path / "counter"
    counter.mkdir()
    (counter / "counter.py").write_text(COUNTER)
    (counter / "requests.toml").write_text('[[request]]\nname = "n"\npath = "/n"\nsame = true\n')
    done = lab_run(
        "--own-app", "counter:app", "--own-code", str(counter), "--cell", cells[0], *SHORT,
        "--referee-seconds", "0", results=tmp_path / "counted",
    )  # fmt: skip
    counted = bundle.load_bundle(only_run(tmp_path / "counted"))
    loads = [r.load for r in counted.repeats if r.load is not None]
    assert loads and all(x.ok == 0 and sum(x.errors.values()) > 100 for x in loads), done.stderr
