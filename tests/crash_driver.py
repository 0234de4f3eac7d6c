"""A fork server for crash tests: imports everything once, then forks one writer per trial so
a test can SIGKILL real index writes dozens of times without paying start-up each time.

    python crash_driver.py INDEX CORPUS EXTRA

Commands on stdin, one per line; answers on stdout:
    loop T KIND     fork a writer that rebuilds, adds and removes papers forever (KIND: txt or pdf)
    once T K ACTION fork a writer that adds one small paper with WritePoints(fail_at=K, action=ACTION)
    quit
The server answers "PID T pid" after forking and "EXIT T status" when the writer is gone. A
writer prints "ACK T generation paper,ids" after each write returns (an acknowledged write),
and "POINTS T n" after a `once` write that survived its K.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes import HashEmbedder
from faults import WritePoints

from culture_rag import Assistant, PaperNotFoundError, Settings
from culture_rag.library import Library


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # unbuffered: a forked child must not inherit half-written buffers


def open_assistant(index: Path, corpus: Path) -> Assistant:
    settings = Settings(index_dir=index, corpus_dir=corpus, parse_timeout_s=30)
    return Assistant(library=Library.open(settings, HashEmbedder(), create=True))


def ack(trial: str, assistant: Assistant) -> None:
    snap = assistant.snapshot
    say(f"ACK {trial} {snap.generation} {','.join(sorted(p.paper_id for p in snap.papers))}")


def loop(trial: str, index: Path, corpus: Path, extra: Path, kind: str) -> None:
    """Rebuild after an edit, add a paper, remove it; again and again. With kind "pdf" the paper
    is a PDF, so some kills land while the contained parser runs."""
    assistant = open_assistant(index, corpus)
    paper = extra / "crazyones.pdf" if kind == "pdf" else extra / "visiting.txt"
    if kind != "pdf":
        paper.write_text("A visiting paper on the circus schools of Gomel and their Chinese acrobats.\n")
    n = 0
    while True:
        n += 1
        notes = corpus / "notes.txt"
        notes.write_text(notes.read_text() + f"Revision {trial}.{n} records festival number {n} in Vitebsk.\n")
        assistant.build(corpus)
        ack(trial, assistant)
        assistant.add([paper])
        ack(trial, assistant)
        try:
            assistant.remove(paper.stem)
        except PaperNotFoundError:
            pass  # an earlier writer was killed between copying the file and indexing it
        ack(trial, assistant)


def once(trial: str, index: Path, corpus: Path, extra: Path, fail_at: int, action: str) -> None:
    assistant = open_assistant(index, corpus)
    paper = extra / f"small-{trial}.txt"
    paper.write_text(f"A small paper {trial} about the puppet theatre of Brest and its touring company.\n")
    with WritePoints(index, fail_at=fail_at, action=action) as points:
        assistant.add([paper])
    ack(trial, assistant)
    say(f"POINTS {trial} {points.count}")


def warm_up() -> None:
    """Import and build what every writer needs, once, so forked writers start at once."""
    import bm25s  # noqa: F401
    import faiss  # noqa: F401
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401

    import culture_rag.ingest.chunking  # noqa: F401
    from culture_rag.index.lexical import _stemmer

    _stemmer()


def main() -> None:
    index, corpus, extra = (Path(a) for a in sys.argv[1:4])
    warm_up()
    say("READY")
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        trial = command[1]
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if command[0] == "loop":
                    loop(trial, index, corpus, extra, command[2])
                else:
                    once(trial, index, corpus, extra, int(command[2]), command[3])
            except BaseException as exc:  # noqa: BLE001  reported, so the test can tell a bug from a kill
                say(f"ERROR {trial} {type(exc).__name__}: {exc}".replace("\n", " "))
                code = 1
            os._exit(code)
        say(f"PID {trial} {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"EXIT {trial} {status}")


if __name__ == "__main__":
    main()
