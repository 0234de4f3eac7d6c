"""users.toml for `serve --auth`: hashes in, plain text refused, errors naming file and entry;
and the refusal to serve other machines without logins."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from culture_rag.errors import ExposureError, UsersFileError
from culture_rag.serve.users import UsersFile, add_user, read_users, remove_user

PASSWORD = "correct horse battery"


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "culture_rag.serve.cli", *args], input=stdin, capture_output=True, text=True, timeout=120, env=env
    )


def test_added_users_verify_with_their_password_only(tmp_path):
    path = tmp_path / "users.toml"
    assert add_user(path, "alice", PASSWORD) is False
    assert add_user(path, "bob", "another password") is False
    users = read_users(path)
    assert users.verify("alice", PASSWORD) and users.verify("bob", "another password")
    assert not users.verify("alice", "another password")
    assert not users.verify("carol", PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text and text.count("$argon2id$") == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_setting_a_password_again_keeps_comments_and_other_users(tmp_path):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD)
    add_user(path, "bob", "bob's password")
    path.write_text("# the reading group\n" + path.read_text())
    assert add_user(path, "alice", "a new password") is True
    users = read_users(path)
    assert users.verify("alice", "a new password") and not users.verify("alice", PASSWORD)
    assert users.verify("bob", "bob's password")
    assert path.read_text().startswith("# the reading group\n")
    remove_user(path, "bob")
    assert set(read_users(path).hashes) == {"alice"}


@pytest.mark.parametrize(
    ("text", "entry", "words"),
    [
        ('[users.alice]\npassword = "hunter2hunter2"\n', "alice", "plain-text passwords are refused"),
        ('[users.alice]\npassword_hash = "hunter2hunter2"\n', "alice", "plain-text passwords are refused"),
        ("[users.alice]\n", "alice", "password_hash is missing"),
        ('[users.alice]\npassword_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA"\nrole = "admin"\n', "alice", "unknown key 'role'"),
        ('[users."al ice"]\npassword_hash = "x"\n', "al ice", "user name"),
        ('users = "alice"\n', "users", "table"),
        ('[admins.alice]\npassword_hash = "x"\n', "admins", "unknown top-level entry"),
        ("[users.alice\n", None, "not valid TOML"),
        ("", None, "no users"),
    ],
)
def test_a_malformed_file_is_an_error_naming_the_file_and_the_entry(tmp_path, text, entry, words):
    path = tmp_path / "users.toml"
    path.write_text(text)
    with pytest.raises(UsersFileError) as err:
        read_users(path)
    message = str(err.value)
    assert str(path) in message and words in message, message
    if entry:
        assert f"entry {entry!r}" in message, message
    assert "hunter2" not in message  # the refused value is not echoed


def test_a_toml_syntax_error_says_where(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text('[users.alice]\npassword_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA"\n[users.bob\n')
    with pytest.raises(UsersFileError, match="line 3"):
        read_users(path)


def test_a_running_server_sees_new_users_and_keeps_its_accounts_through_a_bad_edit(tmp_path):
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD)
    live = UsersFile(path)
    assert not live.verify("bob", "bob's password")
    add_user(path, "bob", "bob's password")
    assert live.verify("bob", "bob's password")
    path.write_text(path.read_text() + '[users.eve]\npassword = "plain text"\n')
    assert live.verify("alice", PASSWORD) and not live.verify("eve", "plain text")


def test_users_add_reads_the_password_from_stdin_never_argv(tmp_path):
    path = tmp_path / "users.toml"
    added = run_cli("users", "add", "alice", "--auth", str(path), stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert read_users(path).verify("alice", PASSWORD)
    listed = run_cli("users", "list", "--auth", str(path))
    assert listed.stdout.split() == ["alice"]
    short = run_cli("users", "add", "bob", "--auth", str(path), stdin="short\n")
    assert short.returncode == 2 and "8 to 1024 characters" in short.stderr
    bad_name = run_cli("users", "add", "bob smith", "--auth", str(path), stdin=PASSWORD + "\n")
    assert bad_name.returncode == 2 and "bob smith" in bad_name.stderr
    assert set(read_users(path).hashes) == {"alice"}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_logins(host):
    from culture_rag.serve.webapp.guard import check_exposure

    check_exposure(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "2001:db8::1"])
def test_other_addresses_are_refused_without_auth(host, tmp_path):
    from culture_rag.serve.webapp.guard import check_exposure

    with pytest.raises(ExposureError, match="--auth"):
        check_exposure(host, None)
    path = tmp_path / "users.toml"
    add_user(path, "alice", PASSWORD)
    check_exposure(host, UsersFile(path))


def test_serve_on_all_interfaces_without_auth_stops_before_loading_anything(tmp_path):
    result = run_cli("serve", "--host", "0.0.0.0", "--index", str(tmp_path / "no-index"))
    assert result.returncode == 2
    assert "--auth" in result.stderr and "0.0.0.0" in result.stderr
    assert not (tmp_path / "no-index").exists()


def test_login_routes_open_only_with_auth():
    from culture_rag.serve.webapp.guard import route_allowed

    for path in ("/login", "/login/", "/logout"):
        assert route_allowed(path, login=True), path
        assert not route_allowed(path), path
    assert not route_allowed("/gradio_api/token", login=True)
