"""Prepared accounts in process: the pool hands them out in turn, files are read strictly."""

import pytest

from loadtest.accounts import Account, AccountPool, Preparation, read_file


def test_the_pool_hands_out_each_account_before_sharing_any():
    pool = AccountPool()
    assert pool.take() is None and len(pool) == 0
    pool.fill([["a@example.com", "pa"], ["b@example.com", "pb"]])  # as a worker receives them
    taken = [pool.take() for _ in range(5)]
    assert [a.email for a in taken] == ["a@example.com", "b@example.com"] * 2 + ["a@example.com"]
    assert taken[0] == Account("a@example.com", "pa")
    pool.fill([Account("c@example.com", "pc")])  # a new fill starts over
    assert pool.take().email == "c@example.com"


def test_an_accounts_file(tmp_path):
    path = tmp_path / "accounts.csv"
    path.write_text("# made with the CLI\n\nu1@example.com,pass,with,commas\n u2@example.com,x \n")
    assert read_file(path) == [
        Account("u1@example.com", "pass,with,commas"),
        Account("u2@example.com", "x"),
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "no accounts"),
        ("# only a comment\n", "no accounts"),
        ("u1@example.com\n", ":1: expected email,password"),
        ("ok@example.com,x\n,nopassword-email\n", ":2: expected email,password"),
        ("u1@example.com,\n", ":1: expected email,password"),
    ],
)
def test_bad_accounts_files_say_where(tmp_path, body, message):
    path = tmp_path / "accounts.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_file(path)


def test_a_missing_accounts_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="VIGIL_LOAD_ACCOUNTS_FILE: .*missing.csv"):
        read_file(tmp_path / "missing.csv")


def test_the_preparation_says_what_it_took():
    done = Preparation(
        "prepared", requested=50, created=48, failed=2, backpressure=7, seconds=10.4, rate=5.0
    )
    assert done.summary() == (
        "accounts: 48 of 50 registered before the measured phase at 5/s in 10.4 s, 2 failed, "
        "7 back-pressure answers waited out"
    )
    assert "registers its own" in Preparation("register").summary()
    assert Preparation("prepared", 3, 3, source="a.csv").summary() == "accounts: 3 read from a.csv"
